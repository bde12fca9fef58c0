"""What a plain script sees on stderr, with and without logging configured.

Each test runs tests/scripts/logging_user.py in a subprocess (its own
emulator, a real bot, real links): the logging set-up of a fresh process is
what is under test, and pytest's own log capture would hide it in-process.
"""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "logging_user.py"
ROOT = Path(__file__).resolve().parents[2]


def run(setup, scenario):
    """Run the script; return its stderr (it must have reached its end)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, str(SCRIPT), setup, scenario], capture_output=True,
                         text=True, timeout=45, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "END", out.stderr
    return out.stderr


# ------------------------------------------------------ errors in user code


def test_user_code_errors_print_their_tracebacks_with_no_logging_configured():
    err = run("none", "user-code")
    for boom in ("boom-in-handler hello", "boom-in-callback",
                 "boom-in-listener idle->connecting"):
        assert f"RuntimeError: {boom}" in err, err
    assert "handler user_code.<locals>.handler raised on message 1 in room 'room-1'" in err
    assert err.count("Traceback (most recent call last):") >= 3
    # What is routine stays out of a plain script's stderr.
    assert "connected to" not in err


def test_a_flask_handler_error_prints_its_traceback_with_no_logging_configured():
    pytest.importorskip("flask", reason="the flask extra: pip install -e '.[flask]'")
    err = run("none", "flask")
    assert "shout (Flask app 'logging_user') raised on message 1 in room 'room-1'" in err, err
    assert "RuntimeError: boom-in-flask-handler hello" in err


def test_a_django_runbot_handler_error_prints_its_traceback_with_no_logging_configured(
        emulator):
    pytest.importorskip("django", reason="the django extra: pip install -e '.[django]'")
    project = ROOT / "examples" / "django_project"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHERS_", "DJANGO_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(project), str(SCRIPT.parent)]),
               DJANGO_SETTINGS_MODULE="django_settings_without_logging",
               WATCHERS_TOKEN="test-token", WATCHERS_API_KEY="test-key",
               WATCHERS_BOT_ID="django-bot", WATCHERS_URL=emulator.url)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runbot", "--handler", "example_project.handlers.shout"],
        cwd=str(project), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        emulator.wait_for_listeners("room-1", timeout=30)
        emulator.post("room-1", "boom")  # the handler raises: logged, the loop goes on
        emulator.post("room-1", "after")
        assert emulator.wait_for_sent(1, timeout=10)[0].text == "AFTER"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    # The pool's report names the user's handler and the room.
    assert "handler shout raised on message" in err, err
    assert "in room 'room-1'; the room goes on" in err
    assert "RuntimeError: the handler failed on purpose" in err


def test_user_code_errors_go_to_the_apps_handler_when_it_configured_logging():
    err = run("app", "user-code")
    assert "APP ERROR watchers_bot.handler: handler user_code.<locals>.handler raised" in err, err
    assert "RuntimeError: boom-in-handler hello" in err
    assert "APP ERROR watchers_bot: a callback raised" in err
    assert "RuntimeError: boom-in-callback" in err
    # Every line of the library's output came through the app's handler.
    firsts = [line for line in err.splitlines() if line and not line.startswith((" ", "Traceback"))
              and not line.startswith("RuntimeError")]
    assert firsts, err
    assert all(line.startswith("APP ") for line in firsts), err


def test_the_documented_one_liner_silences_the_library():
    assert run("silenced", "user-code") == ""


# ------------------------------------------------------ dropped messages


def test_dropped_messages_are_reported_with_no_logging_configured():
    err = run("none", "drops")
    assert re.search(r"inbox full \(1 messages, .*\): dropped 1 message", err), err
    assert "closed with 1 unread message(s) in the inbox; counted as dropped" in err


# ------------------------------------------------------ levels of the upstream clients


def test_a_warning_level_handler_gets_nothing_at_info_on_close_and_reconnect():
    err = run("warning", "reconnect")
    lines = err.splitlines()
    assert not [line for line in lines if line.startswith(("INFO:", "DEBUG:"))], err
    # The bot reported the loss itself, once, with what it does next.
    lost = [line for line in lines if "lost" in line]
    assert len(lost) == 1, err
    assert re.fullmatch(
        r"WARNING:watchers_bot:link to \S+ lost \(transport error\); reconnecting", lost[0]), err
    assert "WebSocket connection was closed" not in err


def test_the_upstream_close_warning_is_logged_at_info():
    # The same run with an INFO handler: the closed-link line is there, as INFO,
    # so the test above saw a real close and reconnect.
    err = run("info", "reconnect")
    assert "INFO:watchers_bot.engineio:WebSocket connection was closed, aborting" in err, err
    assert "WARNING:watchers_bot.engineio" not in err
    assert re.search(r"INFO:watchers_bot:reconnected to \S+ \(link 2\)", err), err


def test_a_plain_script_sees_a_lost_link_but_no_upstream_chatter():
    err = run("none", "reconnect")
    assert re.fullmatch(r"link to \S+ lost \(transport error\); reconnecting\n", err), err


def test_upstream_warnings_never_pass_a_warning_level_check():
    # In-process, the level check itself, as basicConfig(level=WARNING) sets it
    # up: the logger's level is WARNING, its handler's is NOTSET.  The record is
    # made at INFO, so the logger drops it before any handler sees it.
    import logging

    from watchers_bot._logging import ENGINEIO_LOG, SOCKETIO_LOG

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    logger = logging.getLogger("watchers_bot")
    keep, level = Keep(), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.WARNING)
    try:
        ENGINEIO_LOG.warning("WebSocket connection was closed, aborting")
        SOCKETIO_LOG.warning("Unknown callback received, ignoring.")
        SOCKETIO_LOG.error("a real error")
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    assert [(r.name, r.levelname, r.getMessage()) for r in keep.records] == [
        ("watchers_bot.socketio", "ERROR", "a real error")]
