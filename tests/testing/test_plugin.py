"""The pytest plugin (watchers_bot.testing), as a user of the installed package meets it."""

import os
import subprocess
import sys

pytest_plugins = ["pytester"]

USER_TESTS = '''
import os
import subprocess
import sys

import pytest

from watchers_bot import Bot


def test_bot_round_trip(watchers_emulator, watchers_bot):
    assert watchers_bot.connected
    watchers_bot.listen("room-1")
    watchers_emulator.post("room-1", "hello bot", user_id="alice")
    msg = watchers_bot.receive(timeout=5)
    assert (msg.user_id, msg.text) == ("alice", "hello bot")
    watchers_bot.reply(msg, "hi alice")
    [sent] = watchers_emulator.wait_for_sent(1, timeout=5)
    assert (sent.room_id, sent.text, sent.user_id) == ("room-1", "hi alice", "watchers-test-bot")


def test_no_proxy_covers_the_loopback(watchers_emulator):
    for name in ("NO_PROXY", "no_proxy"):
        hosts = os.environ[name].split(",")
        assert "127.0.0.1" in hosts and "localhost" in hosts, os.environ[name]
        assert "example.org" in hosts  # what was there is kept


def test_factory_and_faults(watchers_emulator, make_watchers_bot):
    one = make_watchers_bot(bot_id="one")
    two = make_watchers_bot(bot_id="two", include_own=True)
    one.listen("r")
    two.listen("r")
    assert len(watchers_emulator.wait_for_listeners("r", count=2, timeout=5)) == 2
    watchers_emulator.drop()
    watchers_emulator.wait_for_listeners("r", count=2, timeout=10)
    one.send("r", "after the drop")
    assert two.receive(timeout=5).text == "after the drop"


def test_from_env_and_subprocess(watchers_env, watchers_emulator, watchers_credentials):
    assert watchers_env["WATCHERS_URL"] == watchers_emulator.url == watchers_credentials.url
    with Bot.from_env() as bot:
        bot.send("r", "from env")
    code = "from watchers_bot import Bot; Bot.from_env().send('r', 'from a child')"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    assert [s.text for s in watchers_emulator.wait_for_sent(2)] == ["from env", "from a child"]


@pytest.mark.watchers_emulator(echo_sender=False, project="acme")
def test_marker_options(watchers_emulator, make_watchers_bot):
    bot = make_watchers_bot(include_own=True)
    bot.listen("r")
    bot.send("r", "not echoed")
    watchers_emulator.post("r", "human")
    msg = bot.receive(timeout=5)
    assert (msg.text, msg.project) == ("human", "acme")


def test_secrets_stay_out_of_reprs(watchers_credentials):
    assert watchers_credentials.token not in repr(watchers_credentials)
    assert watchers_credentials.api_key not in repr(watchers_credentials)


BOTS = []


def test_bots_are_closed_after_the_test_part_1(watchers_emulator, watchers_bot):
    BOTS.append((watchers_emulator, watchers_bot))


def test_bots_are_closed_after_the_test_part_2():
    [(emulator, bot)] = BOTS
    assert bot.closed
    assert not emulator.running
'''


def test_user_tests_pass_with_the_installed_plugin(pytester, monkeypatch):
    # No conftest and no -p option: the pytest11 entry point loads the plugin.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "example.org")
    for name in ("WATCHERS_TOKEN", "WATCHERS_API_KEY", "WATCHERS_BOT_ID", "WATCHERS_URL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=8)
    # The fixtures' monkeypatching was undone after each test.
    assert os.environ["NO_PROXY"] == "example.org"
    assert "WATCHERS_URL" not in os.environ


def test_fixtures_are_listed(pytester):
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([
        "*fixtures defined from watchers_bot.testing*",
        "*watchers_emulator*",
    ])
    for name in ("watchers_bot", "make_watchers_bot", "watchers_env", "watchers_credentials"):
        assert any(line.startswith(name) for line in result.outlines), name


def test_the_plugin_can_be_disabled(pytester):
    pytester.makepyfile("def test_x(watchers_emulator):\n    pass\n")
    result = pytester.runpytest("-p", "no:watchers_bot", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'watchers_emulator' not found*"])


def test_importing_the_plugin_does_not_import_the_emulator_extra_or_the_client():
    code = (
        "import sys, watchers_bot.testing\n"
        "heavy = {'werkzeug', 'simple_websocket', 'watchers_bot.emulator', 'socketio',\n"
        "         'engineio', 'websocket'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_missing_emulator_extra_fails_with_the_install_command(pytester):
    # A session where werkzeug is not installed: the plugin loads, the fixture
    # fails with the command to run, other tests are unaffected.
    pytester.makeconftest(
        "import sys\n"
        "sys.modules['werkzeug'] = None  # import werkzeug raises ImportError\n"
        "sys.modules.pop('watchers_bot.emulator', None)\n"
    )
    pytester.makepyfile(
        "def test_uses_it(watchers_bot):\n    pass\n\n"
        "def test_does_not(): \n    pass\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([
        r"the watchers_emulator fixture needs the emulator extra \(missing: werkzeug.*\); "
        r"install it with: pip install 'watchers-bot\[emulator\]'$",
    ])
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_readme_example_passes(pytester):
    from test_readme import BLOCKS

    [example] = [block for block in BLOCKS if "no conftest.py needed" in block]
    pytester.makepyfile(test_my_bot=example)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
