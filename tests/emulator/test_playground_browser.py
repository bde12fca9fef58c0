"""The playground page in a real browser: headless Chromium driven by Playwright.

Debian's ``chromium`` (no browser download); the emulator and a real ``Bot``
run in this process, the page talks to the emulator as a user's browser would.
With ``WATCHERS_SCREENSHOT=1`` the run also rewrites the README's screenshot,
``docs/_static/playground.png`` (off by default, so a test run leaves the tree clean).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import KEY, TOKEN
from tests.requirements import missing, require
from watchers_bot.emulator import Transcript

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "_static" / "playground.png"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def chromium():
    executable = require("chromium", what="the playground browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playground browser tests need Playwright's Python package; install it "
                "with: python3 -m pip install -e '.[test]' (never `playwright install`: "
                "they use Debian's chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, emu, echo_bot, tmp_path):
    context = chromium.new_context(viewport={"width": 1400, "height": 820},
                                   accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(emu.url + "/_emulator/")
    page.get_by_role("status").filter(has_text="live").wait_for()
    page.get_by_role("button", name="room-1").click()
    yield page
    context.close()
    assert errors == [], errors


def say(page, user, text):
    page.get_by_label("Type as").select_option(user)
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")


def chat(page):
    return page.locator("#messages li")


def expect_texts(page, texts):
    from playwright.sync_api import expect

    expect(chat(page).locator("p")).to_have_text(texts, timeout=TIMEOUT_MS)


def test_two_humans_talk_and_the_bot_answers_in_the_page(page, emu):
    from playwright.sync_api import expect

    say(page, "alice", "hello")
    expect_texts(page, ["hello", "echo: hello"])
    page.get_by_label("Add a user").fill("carol")
    page.get_by_role("button", name="Add user").click()
    say(page, "bob", "how are you")
    say(page, "carol", "me too")
    expect(chat(page)).to_have_count(6, timeout=TIMEOUT_MS)
    humans = chat(page).locator("xpath=self::li[@data-by='human']/span[@class='who']")
    expect(humans).to_have_text(["alice", "bob", "carol"])
    colours = {humans.nth(i).evaluate("e => getComputedStyle(e).color") for i in range(3)}
    assert len(colours) == 3  # each user has a colour of their own
    bots = chat(page).locator("xpath=self::li[@data-by='bot']/span[@class='who']")
    expect(bots).to_have_text(["echo-bot"] * 3)
    assert sorted(m.text for m in emu.sent) == ["echo: hello", "echo: how are you",
                                                 "echo: me too"]

    # the inspector shows the bot's send and the ack it got, with the key masked
    sends = page.locator("#packets li[data-event='external/send']")
    expect(sends).to_have_count(3)
    expect(sends.first.locator(".ack")).to_have_text(re.compile(r"^ack in \d+\.\d ms$"))
    sends.first.locator("summary").click()
    raw = json.loads(sends.first.locator("pre").inner_text())
    assert raw["payload"]["apiKey"] == "***"
    assert raw["payload"]["text"] == "echo: hello"
    assert KEY not in page.content()
    assert TOKEN not in page.content()

    page.get_by_label("Event", exact=True).select_option("external/send")
    expect(page.locator("#packets li")).to_have_count(3)
    expect(page.locator("#packets li[data-event='message']")).to_have_count(0)
    page.get_by_label("Event", exact=True).select_option("")

    page.get_by_role("tab", name="Bots").click()
    expect(page.locator("#bots li[data-state='connected']")).to_contain_text("room-1")
    page.get_by_role("tab", name="Inspector").focus()
    page.keyboard.press("End")  # the tabs work with the keyboard
    expect(page.get_by_role("tab", name="Transcripts")).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Inspector").click()
    page.get_by_label("Message", exact=True).fill("")
    if os.environ.get("WATCHERS_SCREENSHOT") == "1":
        page.screenshot(path=str(SCREENSHOT))


def test_drop_disconnects_the_bot_and_it_returns(page, emu):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Faults").click()
    connections = emu.connections
    page.get_by_role("button", name="Drop link").click()
    page.get_by_role("tab", name="Bots").click()
    expect(page.locator("#bots li[data-state='disconnected']")).to_have_count(1)
    expect(page.locator("#bots li[data-state='connected']")).to_have_count(1)
    expect(page.locator("#bots li[data-state='connected']")).to_contain_text("room-1")
    expect(page.locator("#history li")).to_have_text(
        [re.compile("connected$"), re.compile("disconnected$"), re.compile("connected$")])
    assert emu.connections == connections + 1
    say(page, "alice", "still there?")
    expect_texts(page, ["still there?", "echo: still there?"])


def test_error_ack_by_hand_is_shown_in_the_inspector(page, emu, echo_bot):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Faults").click()
    page.get_by_label("Answer").select_option("error")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("tab", name="Inspector").click()
    say(page, "alice", "fail once")
    sends = page.locator("#packets li[data-event='external/send']")
    expect(sends.first.locator(".ack")).to_have_text(re.compile("^error ack"))
    say(page, "alice", "fine now")
    expect(sends.nth(1).locator(".ack")).to_have_text(re.compile("^ack in"))


def test_save_reload_replay_and_export(page, emu, tmp_path):
    from playwright.sync_api import expect

    say(page, "alice", "one")
    expect_texts(page, ["one", "echo: one"])
    say(page, "bob", "two")
    expect_texts(page, ["one", "echo: one", "two", "echo: two"])

    page.get_by_role("tab", name="Transcripts").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Save transcript").click()
    saved = tmp_path / "transcript.json"
    download.value.save_as(saved)
    transcript = Transcript.load(saved)
    assert transcript.bot_texts() == ["echo: one", "echo: two"]

    page.reload()
    page.get_by_role("status").filter(has_text="live").wait_for()
    page.get_by_role("tab", name="Transcripts").click()
    page.get_by_label("Load transcript").set_input_files(str(saved))
    expect(page.locator("#turns li")).to_have_count(4)
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#replay-status")).to_have_text("replay done: the same 2 answer(s)")
    assert [m.text for m in emu.sent] == ["echo: one", "echo: two"] * 2

    page.get_by_label("Replay from turn").fill("2")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#replay-status")).to_have_text("replay done: the same 1 answer(s)")
    assert [m.text for m in emu.sent][-1] == "echo: two"
    assert len(emu.sent) == 5

    (tmp_path / "echo_handler.py").write_text(
        "def handle(msg):\n    return 'echo: ' + msg.text\n")
    page.get_by_label("Handler (module:function)").fill("echo_handler:handle")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export as pytest").click()
    exported = tmp_path / "test_exported.py"
    download.value.save_as(exported)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(exported)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_narrow_screen_stacks_the_panels(chromium, emu):
    context = chromium.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.goto(emu.url + "/_emulator/")
    page.get_by_role("status").filter(has_text="live").wait_for(timeout=TIMEOUT_MS)
    width = page.evaluate("document.documentElement.scrollWidth")
    context.close()
    assert width <= 390  # no sideways scrolling on a phone
