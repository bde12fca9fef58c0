"""Every Python example in README.rst runs as written, against the emulator."""

import contextlib
import io
import re
import threading
import time
import warnings
from pathlib import Path

import pytest
from requirements import require_module

import watchers_bot.client.bot
from watchers_bot.emulator import Emulator

README = Path(__file__).resolve().parent.parent / "README.rst"


def python_blocks():
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:(?:    .*)?\n)+)", text, re.M):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[4:] for line in lines).strip() + "\n")
    return blocks


BLOCKS = python_blocks()


def test_readme_has_the_examples_we_expect():
    assert len(BLOCKS) >= 5
    assert "for msg in bot.messages():" in BLOCKS[0]


@pytest.fixture
def env(monkeypatch):
    with Emulator(tokens=["readme-token"], api_keys=["readme-key"]) as emu:
        monkeypatch.setenv("WATCHERS_TOKEN", "readme-token")
        monkeypatch.setenv("WATCHERS_API_KEY", "readme-key")
        monkeypatch.setenv("WATCHERS_BOT_ID", "readme-bot")
        monkeypatch.setenv("WATCHERS_URL", emu.url)
        monkeypatch.delenv("WATCHERS_REGION", raising=False)
        yield emu


def run_block(code, human=None, timeout=20.0):
    """Run one example in a thread while ``human`` plays the other side; return its output."""
    out = io.StringIO()
    errors = []

    def target():
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "README.rst", "exec"), {"__name__": "__readme__"})
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        if human is not None:
            human()
    finally:
        thread.join(timeout)
        if thread.is_alive():
            for bot in list(watchers_bot.client.bot._open_bots):
                bot.close()
            thread.join(5)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    return out.getvalue()


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(env, index):
    code = BLOCKS[index]
    if "watchers_bot.contrib.celery" in code:
        require_module("celery", extra="celery", what="the README's Celery example")
    human = None
    if "bot.messages():" in code:  # the echo loop: talk to it, then stop it as Ctrl-C would
        def human():
            env.wait_for_listeners("room-1", timeout=10)
            env.post("room-1", "hello", user_id="alice")
            [echo] = env.wait_for_sent(1, timeout=10)
            assert echo.text == "echo: hello"
            [bot] = list(watchers_bot.client.bot._open_bots)
            deadline = time.monotonic() + 10
            while bot.stats.sent < 1 and time.monotonic() < deadline:  # the ack is on its way
                time.sleep(0.01)
            bot.close()
    elif "except ReceiveTimeout" in code:
        def human():
            env.wait_for_listeners("room-1", timeout=10)
            env.post("room-1", "first", user_id="alice")
            env.post("room-1", "second", user_id="bob")
    output = run_block(code, human)
    if "except ReceiveTimeout" in code:
        assert output.splitlines()[:2] == [
            "alice first", "room-1 second {'id': 2, 'text': 'second'}"
        ]
    if "print(bot)" in code:
        assert "<Bot url='wss://bot.watchers.io/' state='idle' bot_id='my-bot' rooms=[]>" in output
    if "send_async" in code:
        assert [s.text for s in env.sent][-10:] == [f"line {i}" for i in range(10)]


def test_readme_is_valid_restructuredtext():
    """PyPI renders README.rst as the long description: a docutils error breaks that."""
    docutils_core = pytest.importorskip("docutils.core")
    errors = io.StringIO()
    with warnings.catch_warnings():  # writer_name's deprecation varies across docutils
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        docutils_core.publish_string(
            README.read_text(encoding="utf-8"), writer_name="null",
            settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": errors},
        )
    assert errors.getvalue() == ""
