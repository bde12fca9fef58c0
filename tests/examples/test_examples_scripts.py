"""examples/echo_bot.py and examples/send_once.py, run as the scripts they are.

They run as subprocesses against the plugin's emulator (watchers_emulator and
watchers_env come from watchers_bot.testing), with the WATCHERS_* variables
set as a user would.
"""

import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WAIT = 20.0


def _default_sigint():  # pragma: no cover - runs in the child before exec
    # A shell running the tests in the background may have started us with
    # SIGINT ignored, and children inherit that: give them the default back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Script:
    """A running example; stdout is read line by line on a thread, so waits can time out."""

    def __init__(self, name, args, env):
        self.popen = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
            preexec_fn=_default_sigint,
        )
        self.lines = queue.Queue()
        self.stdout = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout=WAIT):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line in {timeout}s") from None
        self.stdout.append(line)
        return line

    def finish(self, timeout=WAIT):
        """Wait for the exit; return (exit code, stdout lines, stderr text)."""
        err = self.popen.stderr.read()  # EOF when the process is gone
        self.popen.wait(timeout)
        self._reader.join(timeout)
        while not self.lines.empty():
            self.stdout.append(self.lines.get())
        return self.popen.returncode, self.stdout, err

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(WAIT)
        self._reader.join(WAIT)
        self.popen.stdout.close()
        self.popen.stderr.close()


@pytest.fixture
def script():
    """Start an example script; every process is killed (if still running) after the test."""
    procs = []

    def start(name, *args, env=None):
        proc = Script(name, args, env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


def run(start, name, *args, env=None):
    return start(name, *args, env=env).finish()


# ------------------------------------------------------------------ echo_bot.py


@pytest.mark.parametrize(("signum", "code", "last_line"), [
    (signal.SIGINT, 130, "echo_bot: interrupted"),
    (signal.SIGTERM, 143, None),
])
def test_echo_bot_echoes_then_stops_cleanly(watchers_emulator, watchers_env, script,
                                            signum, code, last_line):
    proc = script("echo_bot.py", "room-1", "room-2")
    watchers_emulator.wait_for_listeners("room-2", timeout=WAIT)
    watchers_emulator.post("room-2", "hello", user_id="alice")
    assert proc.next_line() == "room-2 alice: hello"  # printed once the echo was acked
    [echo] = watchers_emulator.sent
    assert (echo.room_id, echo.text, echo.user_id) == ("room-2", "echo: hello",
                                                       watchers_env["WATCHERS_BOT_ID"])
    proc.popen.send_signal(signum)
    returncode, out, err = proc.finish()
    assert returncode == code, err
    assert "Traceback" not in err
    assert "Exception ignored" not in err
    if last_line:
        assert err.splitlines()[-1] == last_line
    assert out == ["room-2 alice: hello"]
    # The bot said goodbye: the server saw the socket leave.
    watchers_emulator.wait_for_clients(0, timeout=WAIT)


def test_echo_bot_ctrl_c_while_waiting_for_an_ack(watchers_emulator, watchers_env, script):
    watchers_emulator.set_ack("external/send", "withhold")
    proc = script("echo_bot.py")
    watchers_emulator.wait_for_listeners("room-1", timeout=WAIT)
    watchers_emulator.post("room-1", "hello", user_id="alice")
    watchers_emulator.wait_for_sent(1, timeout=WAIT)  # the reply is out, its ack never comes
    proc.popen.send_signal(signal.SIGINT)
    returncode, out, err = proc.finish()
    assert returncode == 130, err
    assert "Traceback" not in err
    assert "Exception ignored" not in err
    assert err.splitlines()[-1] == "echo_bot: interrupted"
    assert out == []
    watchers_emulator.wait_for_clients(0, timeout=WAIT)


def test_echo_bot_stops_quietly_when_its_reader_goes_away(watchers_emulator, watchers_env):
    # echo_bot.py | head -1: the second print hits a closed pipe.
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_bot.py")],
        stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"}, preexec_fn=_default_sigint,
    )
    os.close(write_end)
    try:
        watchers_emulator.wait_for_listeners("room-1", timeout=WAIT)
        watchers_emulator.post("room-1", "one", user_id="alice")
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([read_end], [], [], WAIT)
            assert ready, f"no output line in {WAIT}s (got {line!r})"
            chunk = os.read(read_end, 4096)
            assert chunk, f"stdout closed (got {line!r})"
            line += chunk
        assert line == b"room-1 alice: one\n"
        os.close(read_end)
        read_end = None
        watchers_emulator.post("room-1", "two", user_id="alice")
        _, err = proc.communicate(timeout=WAIT)
    finally:
        if read_end is not None:
            os.close(read_end)
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=WAIT)
    assert proc.returncode == 1, err
    assert err.splitlines() == ["echo_bot: listening to room-1 (Ctrl-C to stop)"]
    assert [s.text for s in watchers_emulator.sent] == ["echo: one", "echo: two"]
    watchers_emulator.wait_for_clients(0, timeout=WAIT)


def test_echo_bot_reports_a_refused_token_in_one_line(watchers_emulator, watchers_env, script):
    code, _, err = run(script, "echo_bot.py", env={"WATCHERS_TOKEN": "wrong-token-1234"})
    assert code == 1
    assert err.count("\n") == 1, err
    assert err.startswith("echo_bot: error: "), err
    assert "wrong-token-1234" not in err


# ------------------------------------------------------------------ send_once.py


def test_send_once_sends_and_says_nothing(watchers_emulator, watchers_env, script):
    code, out, err = run(script, "send_once.py", "room-1", "good morning ☀")
    assert (code, out, err) == (0, [], "")
    [sent] = watchers_emulator.sent
    assert (sent.room_id, sent.text) == ("room-1", "good morning ☀")
    watchers_emulator.wait_for_clients(0, timeout=WAIT)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["refused token", "server error", "no token",
                                  "unreachable"])
def test_send_once_fails_with_one_line(watchers_emulator, watchers_env, script, case):
    args, env = ["room-1", "hi"], {}
    if case == "refused token":
        env["WATCHERS_TOKEN"] = "wrong-token-1234"
        expected = "refused"
    elif case == "server error":
        watchers_emulator.set_ack("external/send", "error")
        expected = "Internal server error"
    elif case == "no token":
        env["WATCHERS_TOKEN"] = ""
        expected = "WATCHERS_TOKEN is set but empty"
    elif case == "unreachable":
        env["WATCHERS_URL"] = f"http://127.0.0.1:{_free_port()}"
        args = ["--timeout", "1", *args]
        expected = "connect"
    code, out, err = run(script, "send_once.py", *args, env=env)
    assert code == 1, err
    assert out == []
    assert err.count("\n") == 1, err
    assert err.startswith("send_once: error: "), err
    assert expected in err
    assert "wrong-token-1234" not in err
    assert watchers_env["WATCHERS_API_KEY"] not in err
    assert watchers_emulator.sent == []


def test_send_once_usage_error(script):
    code, _, err = run(script, "send_once.py", "only-a-room")
    assert code == 2
    assert "usage: send_once" in err


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "soon"])
def test_send_once_bad_timeout_is_a_usage_error(script, timeout):
    code, out, err = run(script, "send_once.py", "--timeout", timeout, "room-1", "hi")
    assert code == 2, err
    assert out == []
    assert "usage: send_once" in err
    assert "--timeout" in err


def test_send_once_bad_text_is_a_usage_error(watchers_emulator, watchers_env, script):
    # README: exit code 2 for bad arguments; an empty TEXT is one.
    code, out, err = run(script, "send_once.py", "room-1", "")
    assert code == 2, err
    assert out == []
    assert "usage: send_once" in err
    assert "empty" in err
    assert watchers_emulator.sent == []
