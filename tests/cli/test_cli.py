"""The ``watchers-bot`` command line, run as a user runs it.

In-process tests call ``main([...])`` and read what it printed (capsys);
subprocess tests run ``python -m watchers_bot`` and look at exit codes,
stdout and stderr.  Every wait has a timeout, and every process a test starts
is ended by the ``procs`` fixture, whatever happens.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional

import pytest
from helpers import wait_until

from watchers_bot import __version__
from watchers_bot.cli import main
from watchers_bot.emulator import Emulator

TOKEN = "cli-test-token-6f1d2a"
API_KEY = "cli-test-key-93be07"
BOT_ID = "cli-bot"
WAIT = 10.0  # the longest any single step may take before the test fails
PROC_TIMEOUT = 20.0  # the longest any subprocess may run


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def creds(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    """WATCHERS_* variables pointing at ``emu``, set in this process; returned for subprocesses."""
    env = {
        "WATCHERS_URL": emu.url,
        "WATCHERS_TOKEN": TOKEN,
        "WATCHERS_API_KEY": API_KEY,
        "WATCHERS_BOT_ID": BOT_ID,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHERS_")}
    env.update({
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    })
    env.update(extra or {})
    return env


def _default_sigint() -> None:  # pragma: no cover - runs in the child before exec
    # A shell running the tests in the background may have started us with
    # SIGINT ignored, and children inherit that: give them the default back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A running ``python -m watchers_bot``, its output read line by line by two threads."""

    def __init__(self, args: List[str], env: Dict[str, str], stdin: Optional[str] = None):
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "watchers_bot", *args],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            preexec_fn=_default_sigint if os.name == "posix" else None,
        )
        self.lines: Dict[str, "queue.Queue[Optional[str]]"] = {
            "stdout": queue.Queue(), "stderr": queue.Queue(),
        }
        self.seen: Dict[str, List[str]] = {"stdout": [], "stderr": []}
        self._readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True)
            for name in ("stdout", "stderr")
        ]
        for reader in self._readers:
            reader.start()
        if stdin is not None:
            assert self.popen.stdin is not None
            self.popen.stdin.write(stdin)
            self.popen.stdin.close()

    def _read(self, name: str) -> None:
        stream = getattr(self.popen, name)
        try:
            for line in stream:
                self.lines[name].put(line.rstrip("\n"))
        except (OSError, ValueError):  # closed under us at teardown
            pass
        finally:
            self.lines[name].put(None)

    def expect(self, name: str, predicate: Callable[[str], bool], timeout: float = WAIT) -> str:
        """The first new line of ``name`` matching ``predicate``; fails after ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            try:
                line = self.lines[name].get(timeout=max(left, 0.0))
            except queue.Empty:
                pytest.fail(f"no matching {name} line in {timeout:g}s; saw {self.seen[name]!r}")
            if line is None:
                self.lines[name].put(None)
                pytest.fail(f"{name} ended without a matching line; saw {self.seen[name]!r}")
            self.seen[name].append(line)
            if predicate(line):
                return line

    def finish(self, timeout: float = PROC_TIMEOUT) -> "Result":
        """Wait for the exit; returns the code and all output lines."""
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        out: Dict[str, List[str]] = {}
        for name in ("stdout", "stderr"):
            rest = list(self.seen[name])
            while True:
                line = self.lines[name].get_nowait() if not self.lines[name].empty() else None
                if line is None:
                    break
                rest.append(line)
            out[name] = rest
        return Result(code, out["stdout"], out["stderr"])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(PROC_TIMEOUT)
        for stream in (self.popen.stdout, self.popen.stderr, self.popen.stdin):
            if stream is not None:
                stream.close()


class Result:
    def __init__(self, code: int, stdout: List[str], stderr: List[str]) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    @property
    def text(self) -> str:
        return "\n".join(self.stdout + self.stderr)


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    """Start CLI subprocesses; any still running at the end of the test is killed."""
    started: List[Proc] = []

    def start(*args: str, env: Optional[Dict[str, str]] = None, stdin: Optional[str] = None
              ) -> Proc:
        proc = Proc(list(args), _child_env(env), stdin)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def run(procs: Callable[..., Proc], *args: str, env: Optional[Dict[str, str]] = None,
        stdin: Optional[str] = None) -> Result:
    """Run the CLI to completion in a subprocess."""
    return procs(*args, env=env, stdin=stdin).finish()


def _assert_one_error_line(stderr: str, *needles: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    line = lines[0]
    assert line.startswith("watchers-bot: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert "Traceback" not in stderr
    return line


class Poster:
    """Posts in rooms from a thread once the CLI listens to them (errors kept for the test)."""

    def __init__(self, emu: Emulator, posts: List[tuple]) -> None:
        self.emu = emu
        self.posts = posts
        self.payloads: List[dict] = []
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for room in dict.fromkeys(room for room, _text, _extra in self.posts):
                self.emu.wait_for_listeners(room, 1, timeout=WAIT)
            for room, text, extra in self.posts:
                self.payloads.append(self.emu.post(room, text, **extra))
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Poster:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


# --------------------------------------------------------------------------- global options


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"watchers-bot {__version__}\n"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "serve", "listen", "send"):
        assert command in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["listen"], "ROOM"),
        (["listen", "room", "--count", "0"], "at least 1"),
        (["listen", "room", "--timeout", "-1"], "positive"),
        (["send", "room"], "TEXT"),
        (["serve", "--port", "70000"], "65535"),
        (["demo", "--messages", "many"], "not an integer"),
    ],
)
def test_usage_errors_exit_2(
    argv: List[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # argparse's own format: "usage: ..." then "watchers-bot [COMMAND]: error: ..."
    assert re.search(r"^watchers-bot( [a-z]+)?: error: ", captured.err, re.MULTILINE)
    assert needle in captured.err
    assert "Traceback" not in captured.err


# --------------------------------------------------------------------------- demo


DEMO_LINE = re.compile(r"^(human|echo-bot) +> (.+)$")


def _conversation(lines: List[str]) -> List[tuple]:
    return [m.groups() for m in map(DEMO_LINE.match, lines) if m]


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--messages", "2"]) == 0
    captured = capsys.readouterr()
    assert _conversation(captured.out.splitlines()) == [
        ("human", "hello"),
        ("echo-bot", "echo: hello"),
        ("human", "is anyone there?"),
        ("echo-bot", "echo: is anyone there?"),
    ]
    assert captured.err == ""


def test_demo_subprocess(procs: Callable[..., Proc]) -> None:
    started = time.monotonic()
    result = run(procs, "demo", "--messages", "5")
    assert result.code == 0, result.text
    talk = _conversation(result.stdout)
    assert len(talk) == 10
    humans = [text for who, text in talk[0::2]]
    assert [who for who, _ in talk] == ["human", "echo-bot"] * 5
    assert [text for _, text in talk[1::2]] == ["echo: " + t for t in humans]
    assert humans[-1] == "message number 5"
    assert result.stderr == []
    assert time.monotonic() - started < 10


# --------------------------------------------------------------------------- listen


def test_listen_prints_payloads_as_json_lines(
    emu: Emulator, creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    posts = [
        ("room-a", "hello", {}),
        ("room-b", "grüße, 世界 🎉", {"userId": "u-7"}),
        ("room-a", "with an extra field", {"thread": {"id": 3}}),
    ]
    with Poster(emu, posts) as poster:
        code = main(["listen", "room-a", "room-b", "--count", "3", "--timeout", str(WAIT)])
    assert code == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [json.loads(line) for line in lines] == poster.payloads
    assert "世界 🎉" in lines[1]  # ensure_ascii=False: readable as sent
    assert captured.err.splitlines() == [
        f"watchers-bot: listening to room-a, room-b on {emu.url} (Ctrl-C to stop)"
    ]


def test_listen_flags_override_the_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHERS_TOKEN", "stale-token-from-env")
    monkeypatch.setenv("WATCHERS_URL", "http://127.0.0.1:1")
    with Poster(emu, [("r", "hi", {})]):
        code = main([
            "-q", "listen", "r", "--count", "1", "--timeout", str(WAIT),
            "--url", emu.url, "--token", TOKEN, "--api-key", API_KEY,
        ])
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["message"]["text"] == "hi"
    assert captured.err == ""  # -q: no status line


def test_listen_stops_after_timeout_without_messages(
    creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main(["-q", "listen", "quiet-room", "--timeout", "0.3"]) == 0
    assert time.monotonic() - started < 5
    assert capsys.readouterr() == ("", "")


def test_listen_skips_the_bots_own_messages(
    emu: Emulator, creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    posts = [("r", "from myself", {"user_id": BOT_ID}), ("r", "from a human", {})]
    with Poster(emu, posts):
        assert main(["-q", "listen", "r", "--count", "1", "--timeout", str(WAIT)]) == 0
    texts = [json.loads(line)["message"]["text"] for line in capsys.readouterr().out.splitlines()]
    assert texts == ["from a human"]


def test_listen_include_own_prints_the_bots_own_messages(
    emu: Emulator, creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    posts = [("r", "from myself", {"user_id": BOT_ID}), ("r", "from a human", {})]
    with Poster(emu, posts):
        assert main(["-q", "listen", "r", "--include-own", "--count", "2",
                     "--timeout", str(WAIT)]) == 0
    texts = [json.loads(line)["message"]["text"] for line in capsys.readouterr().out.splitlines()]
    assert texts == ["from myself", "from a human"]


def test_listen_shard_listens_only_to_its_rooms(
    emu: Emulator, creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # crc32: of a..e, shard 0/2 owns d and e.
    def human() -> None:
        emu.wait_for_listeners("d", 1, timeout=WAIT)
        emu.post("d", "for shard 0")

    poster = threading.Thread(target=human, daemon=True)
    poster.start()
    assert main(["listen", "a", "b", "d", "--shard", "0/2", "--count", "1",
                 "--timeout", str(WAIT)]) == 0
    poster.join(WAIT)
    assert not poster.is_alive()
    assert not emu.listeners("a")
    assert not emu.listeners("b")
    captured = capsys.readouterr()
    assert [json.loads(line)["message"]["text"] for line in captured.out.splitlines()] == [
        "for shard 0"]
    assert "listening to d on" in captured.err


def test_listen_shard_owning_none_of_the_rooms_is_a_usage_error(
    creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["listen", "a", "b", "--shard", "0/2"]) == 2
    assert "none of the rooms belongs to shard" in capsys.readouterr().err
    assert main(["listen", "a", "--shard", "2/2"]) == 2  # index out of range: argparse


def test_listen_says_when_the_link_is_back_after_it_was_lost(
    emu: Emulator, creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out: List[str] = []
    err: List[str] = []

    def read() -> str:
        captured = capsys.readouterr()
        out.append(captured.out)
        err.append(captured.err)
        return "".join(out)

    def human() -> None:
        emu.wait_for_listeners("r", 1, timeout=WAIT)
        emu.post("r", "before")
        # Cut the TCP link once "before" is printed (a cut drops what is still
        # in flight): the bot reconnects and listens again.
        wait_until(lambda: "before" in read(), WAIT, "the first message")
        emu.drop()
        # The emulator counts the listener before its ack reaches the bot, so a
        # message posted then could end the run before the bot is connected again.
        wait_until(lambda: "link back" in read() or "link back" in "".join(err), WAIT,
                   "the link-back line")
        emu.post("r", "after")

    poster = threading.Thread(target=human, daemon=True)
    poster.start()
    assert main(["listen", "r", "--count", "2", "--timeout", str(WAIT)]) == 0
    poster.join(WAIT)
    assert not poster.is_alive()
    texts = [json.loads(line)["message"]["text"] for line in read().splitlines()]
    assert texts == ["before", "after"]
    lines = "".join(err).splitlines()
    lost = [i for i, line in enumerate(lines) if "lost" in line]
    back = [i for i, line in enumerate(lines)
            if line == f"watchers-bot: link back: listening to r again on {emu.url}"]
    assert len(lost) == 1, lines
    assert len(back) == 1, lines
    assert lost[0] < back[0], lines


def test_listen_help_names_include_own_and_its_default(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["listen", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--include-own" in out
    assert "WATCHERS_BOT_ID" in out


def test_verbose_logs_never_show_secrets(
    emu: Emulator, creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with Poster(emu, [("r", "hi", {})]):
        assert main(["listen", "r", "--count", "1", "--timeout", str(WAIT), "-vv"]) == 0
    err = capsys.readouterr().err
    assert "DEBUG" in err
    assert "connected to" in err
    assert TOKEN not in err
    assert API_KEY not in err


# --------------------------------------------------------------------------- send


def test_send_posts_as_the_bot(emu: Emulator, creds: Dict[str, str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "room-1", "hello from the CLI"]) == 0
    sent = emu.wait_for_sent(1, timeout=WAIT)
    assert [(m.room_id, m.text, m.user_id) for m in sent] == [
        ("room-1", "hello from the CLI", BOT_ID)
    ]
    assert capsys.readouterr() == ("", "")


def test_send_dash_reads_stdin(
    emu: Emulator, creds: Dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("first line\nsecond line\n"))
    assert main(["send", "room-1", "-", "--bot-id", "other-bot"]) == 0
    sent = emu.wait_for_sent(1, timeout=WAIT)
    assert sent[0].text == "first line\nsecond line"  # only the final newline is dropped
    assert sent[0].user_id == "other-bot"


def test_send_refused_api_key_is_one_line_without_the_key(
    emu: Emulator, creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    wrong_key = "wrong-api-key-5a5a5a"
    assert main(["send", "room-1", "hi", "--api-key", wrong_key]) == 1
    captured = capsys.readouterr()
    line = _assert_one_error_line(captured.err, "apiKey")
    assert wrong_key not in line
    assert TOKEN not in line
    assert emu.sent == []


def test_send_timeout_bounds_the_whole_command_while_the_server_is_down(
    emu: Emulator, creds: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = emu.url
    emu.stop()  # nothing listens on the port any more
    monkeypatch.setenv("WATCHERS_URL", url)
    start = time.monotonic()
    assert main(["send", "room-1", "hi", "--timeout", "2", "--connect-timeout", "30"]) == 1
    took = time.monotonic() - start
    assert took < 2 + 1.5, f"send --timeout 2 took {took:.1f}s"
    _assert_one_error_line(capsys.readouterr().err, "2s", "nothing was sent", "refused")


# --------------------------------------------------------------------------- errors


def test_bad_token_is_one_line_mentioning_the_refusal(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "not-the-right-token-0c0ffee"
    monkeypatch.setenv("WATCHERS_API_KEY", API_KEY)
    assert main(["listen", "r", "--url", emu.url, "--token", bad]) == 1
    captured = capsys.readouterr()
    line = _assert_one_error_line(captured.err, "refused")
    assert bad not in line
    assert API_KEY not in line
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv", "env", "variable"),
    [
        (["listen", "r"], {"WATCHERS_API_KEY": API_KEY}, "WATCHERS_TOKEN"),
        (["listen", "r"], {"WATCHERS_TOKEN": TOKEN}, "WATCHERS_API_KEY"),
        (["send", "r", "hi"], {"WATCHERS_TOKEN": TOKEN, "WATCHERS_API_KEY": API_KEY},
         "WATCHERS_BOT_ID"),
        (["send", "r", "hi"], {"WATCHERS_TOKEN": "  ", "WATCHERS_API_KEY": API_KEY},
         "WATCHERS_TOKEN"),
    ],
)
def test_missing_configuration_names_the_variable(
    argv: List[str], env: Dict[str, str], variable: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 1
    captured = capsys.readouterr()
    line = _assert_one_error_line(captured.err, variable, "--")
    assert TOKEN not in line
    assert API_KEY not in line


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["listen", "r", "--region", "mars"], "unknown region"),
        (["listen", "r", "--url", "ftp://example.com"], "url must be"),
        (["send", "r", "   "], "text must not be empty"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: List[str], needle: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WATCHERS_TOKEN", TOKEN)
    monkeypatch.setenv("WATCHERS_API_KEY", API_KEY)
    monkeypatch.setenv("WATCHERS_BOT_ID", BOT_ID)
    assert main(argv) == 2
    line = _assert_one_error_line(capsys.readouterr().err, needle)
    assert TOKEN not in line
    assert API_KEY not in line


def test_unreachable_server_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHERS_TOKEN", TOKEN)
    monkeypatch.setenv("WATCHERS_API_KEY", API_KEY)
    monkeypatch.setenv("WATCHERS_BOT_ID", BOT_ID)
    argv = ["send", "r", "hi", "--url", "http://127.0.0.1:1", "--connect-timeout", "0.5"]
    assert main(argv) == 1
    _assert_one_error_line(capsys.readouterr().err, "could not connect", "127.0.0.1:1")


def test_serve_on_a_busy_port_is_one_line(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", str(emu.port)]) == 1
    captured = capsys.readouterr()
    _assert_one_error_line(captured.err, f"127.0.0.1:{emu.port}")
    assert captured.out == ""


# --------------------------------------------------------------------------- subprocesses


def test_exit_codes_of_python_m(procs: Callable[..., Proc]) -> None:
    version = run(procs, "--version")
    assert (version.code, version.stdout) == (0, [f"watchers-bot {__version__}"])

    usage = run(procs)
    assert usage.code == 2
    assert usage.stderr[-1].startswith("watchers-bot: error:")

    missing = run(procs, "listen", "r")
    assert missing.code == 1
    _assert_one_error_line("\n".join(missing.stderr), "WATCHERS_TOKEN")


def test_a_blank_option_is_a_usage_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHERS_TOKEN", "token-from-the-environment")
    monkeypatch.setenv("WATCHERS_API_KEY", API_KEY)
    assert main(["send", "r", "hi", "--bot-id", "b", "--token", " "]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err, "--token is empty")
    assert "token-from-the-environment" not in err


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["listen", "--help"], []])
def test_parsing_imports_no_client(argv: List[str]) -> None:
    # --version, --help and usage errors answer without loading socketio, engineio or
    # websocket-client (about 0.4 s): the commands import the client when they run.
    code = (
        "import sys\n"
        "from watchers_bot.cli import main\n"
        f"code = main({argv!r})\n"
        "heavy = {'socketio', 'engineio', 'websocket', 'watchers_bot.bot',\n"
        "         'watchers_bot.client'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert code in (0, 2), code\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr


def test_bad_token_subprocess(emu: Emulator, procs: Callable[..., Proc]) -> None:
    bad = "definitely-wrong-token-77"
    result = run(procs, "send", "r", "hi", "--token", bad, env={
        "WATCHERS_URL": emu.url, "WATCHERS_API_KEY": API_KEY, "WATCHERS_BOT_ID": BOT_ID,
    })
    assert result.code == 1
    _assert_one_error_line("\n".join(result.stderr), "refused")
    assert bad not in result.text
    assert API_KEY not in result.text
    assert emu.refused >= 1


def test_listen_ctrl_c_exits_130(creds: Dict[str, str], procs: Callable[..., Proc]) -> None:
    proc = procs("listen", "r", env=creds)
    proc.expect("stderr", lambda line: "listening to r" in line)
    proc.popen.send_signal(signal.SIGINT)
    result = proc.finish()
    assert result.code == 130
    assert result.stderr[-1] == "watchers-bot: interrupted"
    assert "Traceback" not in result.text
    assert result.stdout == []


def test_serve_then_listen_and_send_then_ctrl_c(procs: Callable[..., Proc]) -> None:
    server = procs("serve", "--port", "0", "--token", "tok-one,tok-two", "--token", "tok-three",
                   "--api-key", "key-one", "--project", "cli-project")
    first = server.expect("stdout", lambda line: "listening on" in line)
    url = re.search(r"http://127\.0\.0\.1:\d+", first)
    assert url is not None, first
    server.expect("stdout", lambda line: "tok-one, tok-two, tok-three" in line)
    server.expect("stdout", lambda line: line.strip() == f"export WATCHERS_URL={url.group()}")
    server.expect("stdout", lambda line: "Ctrl-C" in line)

    env = {"WATCHERS_URL": url.group(), "WATCHERS_TOKEN": "tok-two",
           "WATCHERS_API_KEY": "key-one", "WATCHERS_BOT_ID": "cli-sender"}
    listener = procs("listen", "news", "--count", "2", "--timeout", str(WAIT),
                     "--bot-id", "cli-listener", env=env)
    listener.expect("stderr", lambda line: "listening to news" in line)

    sent = [run(procs, "send", "news", "first: héllo", env=env),
            run(procs, "send", "news", "-", env=env, stdin="second, from stdin\n")]
    assert [(r.code, r.stdout, r.stderr) for r in sent] == [(0, [], [])] * 2

    heard = listener.finish()
    assert heard.code == 0, heard.text
    payloads = [json.loads(line) for line in heard.stdout]
    assert [(p["roomId"], p["userId"], p["project"], p["message"]["text"]) for p in payloads] == [
        ("news", "cli-sender", "cli-project", "first: héllo"),
        ("news", "cli-sender", "cli-project", "second, from stdin"),
    ]

    refused = run(procs, "listen", "news", env={**env, "WATCHERS_TOKEN": "tok-forged"})
    assert refused.code == 1
    _assert_one_error_line("\n".join(refused.stderr), "refused")
    assert "tok-forged" not in refused.text

    server.popen.send_signal(signal.SIGINT)
    stopped = server.finish()
    assert stopped.code == 0
    assert "Traceback" not in stopped.text
    assert stopped.stderr == ["watchers-bot: stopping the emulator"]


def test_serve_generates_credentials_and_stops_on_sigterm(procs: Callable[..., Proc]) -> None:
    server = procs("serve", "--port", "0", "--ping-interval", "5", "--ping-timeout", "5")
    server.expect("stdout", lambda line: "listening on" in line)
    token = server.expect("stdout", lambda line: "export WATCHERS_TOKEN=" in line)
    key = server.expect("stdout", lambda line: "export WATCHERS_API_KEY=" in line)
    assert len(token.split("=", 1)[1]) >= 16
    assert len(key.split("=", 1)[1]) >= 16
    server.expect("stdout", lambda line: "Ctrl-C" in line)
    server.popen.terminate()
    stopped = server.finish()
    assert stopped.code == 0
    assert "Traceback" not in stopped.text


# --------------------------------------------------------------------------- listen --pretty


def test_listen_pretty_prints_readable_lines(
    emu: Emulator, creds: Dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    posts = [
        ("room-a", "hello", {"user_id": "alice"}),
        ("room-b", "two\nlines", {"user_id": "bob"}),
        ("room-a", "bell\x07 and \x1b[31mred", {"user_id": "eve"}),
    ]
    with Poster(emu, posts):
        code = main(["-q", "listen", "room-a", "room-b", "--pretty", "--count", "3",
                     "--timeout", str(WAIT)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    stamp = r"\d\d:\d\d:\d\d"
    assert re.fullmatch(stamp + r"  room-a  alice: hello", lines[0]), lines
    assert re.fullmatch(stamp + r"  room-b  bob: two", lines[1]), lines
    # A multi-line text continues under its first line.
    assert lines[2] == " " * len(lines[1][: -len("two")]) + "lines"
    # Control characters (terminal escapes) are shown, not obeyed.
    assert lines[3].endswith("eve: bell\\x07 and \\x1b[31mred"), lines
    assert len(lines) == 4


def test_listen_pretty_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["listen", "--help"]) == 0
    assert "--pretty" in capsys.readouterr().out
