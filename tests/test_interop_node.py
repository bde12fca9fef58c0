"""Interoperability with the Node.js Socket.IO implementation (npm ``socket.io`` 4.x).

The real Watchers backend runs on Node, and the vendor's sample bot uses npm's
``socket.io-client``.  These tests check both directions:

1. our :class:`watchers_bot.Bot` against a Watchers server written with npm
   ``socket.io`` (``tests/node/watchers_server.js``);
2. npm's ``socket.io-client``, driven as the vendor's sample does
   (``tests/node/js_client.js``), against our :class:`watchers_bot.emulator.Emulator`.

They need ``node`` and ``npm`` on PATH; the packages are installed once per
session with ``npm ci`` from the repository's ``package-lock.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from watchers_bot import AckTimeout, AuthError, Bot, Message, ServerError

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = Path(__file__).resolve().parent / "node"
SERVER_JS = NODE_DIR / "watchers_server.js"
CLIENT_JS = NODE_DIR / "js_client.js"

TOKEN = "interop-token-3f9c1a"
API_KEY = "interop-api-key-77d2e0"
BOT_ID = "bot-42"

NPM_CI_TIMEOUT = 300.0
START_TIMEOUT = 15.0
EVENT_TIMEOUT = 10.0


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """End a child for sure: close its stdin (our scripts exit then), then kill."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- npm packages


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with npm's socket.io packages installed in the repo."""
    node_exe = shutil.which("node")
    npm_exe = shutil.which("npm")
    if node_exe is None or npm_exe is None:
        missing = " and ".join(n for n, p in (("node", node_exe), ("npm", npm_exe)) if p is None)
        pytest.skip(
            f"Node.js interop tests need `node` and `npm` on PATH ({missing} not found); "
            "install Node.js 20+ to run them"
        )
    packages = ("socket.io", "socket.io-client")
    if not all((REPO / "node_modules" / p / "package.json").is_file() for p in packages):
        cmd = [npm_exe, "ci", "--no-audit", "--no-fund"]
        try:
            done = subprocess.run(
                cmd, cwd=REPO, env=_child_env(), capture_output=True, text=True,
                timeout=NPM_CI_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` did not finish in {NPM_CI_TIMEOUT:g}s (in {REPO})")
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-3000:]
            pytest.fail(f"`npm ci` failed with exit code {done.returncode} in {REPO}:\n{output}")
    return node_exe


# --------------------------------------------------------------------------- the Node server


class NodeServer:
    """``tests/node/watchers_server.js`` in a child process.

    Its stdout lines (JSON) are collected by a reader thread; tests wait on
    them with :meth:`wait_for` and drive the server with :meth:`command`.
    """

    def __init__(self, node: str) -> None:
        self._cond = threading.Condition()
        self.events: List[Dict[str, Any]] = []
        self._stderr: List[str] = []
        self._eof = False
        self.proc = subprocess.Popen(
            [node, str(SERVER_JS), "--port", "0", "--token", TOKEN, "--api-key", API_KEY],
            cwd=REPO, env=_child_env(), text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()
        try:
            self.port = int(self.wait_for(lambda e: "port" in e, START_TIMEOUT)["port"])
        except BaseException:
            self.close()
            raise
        self.url = f"http://127.0.0.1:{self.port}"

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.rstrip("\n")}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait_for(
        self, predicate: Callable[[Dict[str, Any]], bool], timeout: float = EVENT_TIMEOUT,
        *, start: int = 0,
    ) -> Dict[str, Any]:
        """The first event (from index ``start``) matching ``predicate``; waits for it."""
        end = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = max(seen, len(self.events))
                left = end - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(
                        f"node server: no matching event in {timeout:g}s "
                        f"(exit code {self.proc.poll()}); last events: {self.events[-5:]}; "
                        f"stderr: {''.join(self._stderr)[-1000:]}"
                    )
                self._cond.wait(left)

    def mark(self) -> int:
        """An index for ``wait_for(start=...)``: only events after this point."""
        with self._cond:
            return len(self.events)

    def command(self, reply: str, **cmd: Any) -> Dict[str, Any]:
        """Send a command and wait for its answer line (event name ``reply``)."""
        start = self.mark()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.wait_for(lambda e: e.get("event") == reply, start=start)

    def close(self) -> None:
        _stop(self.proc)
        for t in self._readers:
            t.join(5.0)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def server(node: str) -> Iterator[NodeServer]:
    srv = NodeServer(node)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def make_bot(server: NodeServer) -> Iterator[Callable[..., Bot]]:
    bots: List[Bot] = []

    def make(token: str = TOKEN, api_key: str = API_KEY, **kwargs: Any) -> Bot:
        bot = Bot(token, api_key, BOT_ID, url=server.url, connect_timeout=5, ack_timeout=5,
                  reconnect_delay=0.1, **kwargs)
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        bot.close()


# --------------------------------------------------------------------------- our Bot, Node server


def test_bot_connects_to_node_server(server: NodeServer, make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    assert bot.connect() is bot
    assert bot.connected
    assert bot.state == "connected"
    server.wait_for(lambda e: e.get("event") == "connect")


def test_bad_token_raises_auth_error_without_the_token(
    server: NodeServer, make_bot: Callable[..., Bot]
) -> None:
    bad_token = "bad-token-do-not-leak-91b7"
    bot = make_bot(token=bad_token)
    started = time.monotonic()
    with pytest.raises(AuthError) as info:
        bot.connect()
    assert time.monotonic() - started < 4.0  # refused at once, not retried until the timeout
    assert "Unauthorized: invalid bearer token" in str(info.value)
    for text in (str(info.value), repr(info.value), info.value.reason, repr(info.value.raw)):
        assert bad_token not in text
    assert not bot.connected
    server.wait_for(lambda e: e.get("event") == "refused")


def test_listen_and_send_round_trip(server: NodeServer, make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(include_own=True)
    bot.listen("room-1")
    assert bot.rooms == ("room-1",)
    server.wait_for(lambda e: e.get("event") == "listen" and e.get("room") == "room-1")

    assert bot.send("room-1", "hello from python") is None  # the documented empty ack
    sent = server.wait_for(lambda e: e.get("event") == "send")
    assert (sent["room"], sent["userId"], sent["text"]) == ("room-1", BOT_ID, "hello from python")

    own = bot.receive(timeout=5)
    assert isinstance(own, Message)
    assert (own.room_id, own.id, own.text) == ("room-1", sent["id"], "hello from python")
    assert (own.user_id, own.project) == (BOT_ID, "node")
    assert own.raw == {
        "project": "node", "roomId": "room-1",
        "message": {"id": sent["id"], "text": "hello from python"}, "userId": BOT_ID,
    }

    posted = server.command("posted", cmd="post", room="room-1", text="hi bot", userId="alice")
    msg = bot.receive(timeout=5)
    assert (msg.room_id, msg.id, msg.text) == ("room-1", posted["id"], "hi bot")
    assert msg.user_id == "alice"
    assert bot.stats.sent == 1
    assert bot.stats.send_failures == 0


def test_own_messages_are_skipped_by_default(
    server: NodeServer, make_bot: Callable[..., Bot]
) -> None:
    bot = make_bot()
    bot.listen("room-1")
    bot.send("room-1", "my own words")
    server.command("posted", cmd="post", room="room-1", text="a human speaks")
    # The server echoed the bot's message before this one; the bot skipped it.
    msg = bot.receive(timeout=5)
    assert (msg.text, msg.user_id) == ("a human speaks", "human")
    assert bot.stats.skipped_own == 1


def test_bad_api_key_is_a_server_error(server: NodeServer, make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(api_key="not-the-api-key")
    with pytest.raises(ServerError) as info:
        bot.listen("room-1")
    assert info.value.code == 401
    assert info.value.event == "external/listen"
    assert "not-the-api-key" not in str(info.value)
    assert bot.rooms == ()


def test_messages_arrive_in_order(server: NodeServer, make_bot: Callable[..., Bot]) -> None:
    count = 1000
    bot = make_bot()
    bot.listen("busy")
    posted = server.command("posted_many", cmd="post_many", room="busy", count=count)
    first = posted["firstId"]

    got: List[Message] = []
    for msg in bot.messages(timeout=5):
        got.append(msg)
        if len(got) == count:
            break
    assert len(got) == count
    assert [m.id for m in got] == list(range(first, first + count))
    assert [m.text for m in got] == [f"msg-{i}" for i in range(count)]
    assert {m.room_id for m in got} == {"busy"}
    assert bot.stats.dropped == 0
    assert bot.stats.delivered == count


def test_reconnects_and_listens_again_after_server_kick(
    server: NodeServer, make_bot: Callable[..., Bot]
) -> None:
    bot = make_bot()
    bot.listen("room-k")
    sid = server.wait_for(lambda e: e.get("event") == "listen" and e.get("room") == "room-k")["sid"]

    # Several kicks: a race in tearing down the kicked link once stalled the
    # reconnect for ~10 s about every other time (only against the Node server).
    for kick in range(1, 4):
        mark = server.mark()
        started = time.monotonic()
        assert server.command("kicked", cmd="kick")["count"] == 1
        server.wait_for(lambda e, old=sid: e.get("event") == "disconnect" and e["sid"] == old,
                        start=mark)
        # A new socket, and the bot listened again on it by itself.
        relisten = server.wait_for(
            lambda e, old=sid: e.get("event") == "listen" and e.get("room") == "room-k"
            and e["sid"] != old,
            start=mark,
        )
        elapsed = time.monotonic() - started
        assert elapsed < 3.0, f"kick {kick}: listening again took {elapsed:.1f}s"
        sid = relisten["sid"]

        posted = server.command("posted", cmd="post", room="room-k", text=f"after kick {kick}")
        msg = bot.receive(timeout=5)
        assert (msg.text, msg.id) == (f"after kick {kick}", posted["id"])
        _wait_until(lambda k=kick: bot.connected and bot.stats.reconnects >= k, 5.0,
                    f"the bot to count reconnection {kick}")

    assert bot.rooms == ("room-k",)
    assert bot.send("room-k", "still here") is None
    sent = server.wait_for(lambda e: e.get("event") == "send")
    assert (sent["sid"], sent["text"]) == (sid, "still here")


def test_exception_event_fails_send_promptly(
    server: NodeServer, make_bot: Callable[..., Bot]
) -> None:
    bot = make_bot()
    bot.listen("room-x")
    assert server.command("exception_mode", cmd="exception_mode", on=True)["on"] is True

    started = time.monotonic()
    with pytest.raises(ServerError) as info:
        bot.send("room-x", "refused")
    elapsed = time.monotonic() - started
    assert not isinstance(info.value, AckTimeout)
    assert elapsed < 2.0, f"send took {elapsed:.2f}s: it waited for the ack timeout"
    assert info.value.message == "Forbidden resource"
    assert info.value.event == "external/send"
    assert "Forbidden resource" in str(info.value)
    # The server echoes the request payload in `cause.data`; the API key is masked.
    assert info.value.raw["cause"]["data"]["text"] == "refused"
    assert info.value.raw["cause"]["data"]["apiKey"] == "***"
    assert API_KEY not in str(info.value) + repr(info.value.raw)
    server.wait_for(lambda e: e.get("event") == "exception" and e.get("text") == "refused")
    assert bot.stats.send_failures == 1
    assert bot.stats.pending == 0
    assert bot.connected


# --------------------------------------------------------------------------- npm client, emulator


@pytest.fixture
def emu() -> Iterator[Any]:
    """Our emulator, with this module's token and API key (conftest's ``emulator`` has others)."""
    from watchers_bot.emulator import Emulator

    with Emulator(tokens=[TOKEN], api_keys=[API_KEY]) as emu:
        yield emu


def _run_js_client(
    node: str, url: str, *, token: str = TOKEN, room: str = "room-js", text: str = "hello from js",
    expect: Optional[List[str]] = None, during: Optional[Callable[[], None]] = None,
) -> Tuple[int, List[Dict[str, Any]], str]:
    """Run js_client.js; call ``during()`` while it runs; return (exit code, events, stderr)."""
    cmd = [node, str(CLIENT_JS), "--url", url, "--token", token, "--api-key", API_KEY,
           "--room", room, "--user-id", BOT_ID, "--text", text, "--timeout", "10000"]
    for e in expect or ():
        cmd += ["--expect", e]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_child_env(), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        if during is not None:
            during()
        stdout, stderr = proc.communicate(timeout=20)
    except BaseException as exc:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=5)
        raise AssertionError(
            f"js_client.js: {exc!r}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ) from exc
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return proc.returncode, events, stderr


def _of(events: List[Dict[str, Any]], name: str) -> List[Dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


def test_js_client_against_emulator(node: str, emu: Any) -> None:
    room = "room-js"

    def post_when_listening() -> None:
        emu.wait_for_listeners(room, count=1, timeout=10.0)
        emu.post(room, "hello from python", user_id="human")

    code, events, stderr = _run_js_client(
        node, emu.url, room=room, text="hello from js", expect=["hello from python"],
        during=post_when_listening,
    )
    assert code == 0, (events, stderr)
    assert len(_of(events, "connect")) == 1
    assert not _of(events, "connect_error")

    (listen_ack,) = _of(events, "listen_ack")
    assert all(arg.get("status") != "error" for arg in listen_ack["args"] if isinstance(arg, dict))
    (send_ack,) = _of(events, "send_ack")
    assert send_ack["error"] is None  # the vendor's callback(error) sees no error
    assert send_ack["args"] in ([], [None])

    messages = [e["payload"] for e in _of(events, "message")]
    by_text = {m["message"]["text"]: m for m in messages}
    own = by_text["hello from js"]
    assert (own["roomId"], own["userId"], own["project"]) == (room, BOT_ID, emu.project)
    assert isinstance(own["message"]["id"], int)
    human = by_text["hello from python"]
    assert (human["roomId"], human["userId"]) == (room, "human")
    assert own["message"]["id"] != human["message"]["id"]
    assert _of(events, "done")

    (sent,) = emu.wait_for_sent(1, timeout=5.0)
    assert (sent.room_id, sent.text, sent.user_id) == (room, "hello from js", BOT_ID)


def test_js_client_bad_token_gets_connect_error(node: str, emu: Any) -> None:
    bad_token = "js-bad-token-5e0a"
    code, events, stderr = _run_js_client(node, emu.url, token=bad_token)
    assert code == 1, (events, stderr)
    (error,) = _of(events, "connect_error")
    assert isinstance(error["message"], str)
    assert error["message"].strip()
    assert "Unauthorized" in error["message"]
    assert bad_token not in json.dumps(events)
    assert error["active"] is False  # a refusal is final: socket.io-client does not retry
    assert not _of(events, "connect")
    assert emu.sent == []
    assert emu.refused >= 1


# --------------------------------------------------------------------------- text size (UTF-8)


@pytest.mark.parametrize("char", ["ж", "中", "😀"], ids=["cyrillic", "cjk", "emoji"])
def test_text_just_under_the_frame_limit_round_trips_through_node(
    server: NodeServer, make_bot: Callable[..., Bot], char: str
) -> None:
    from watchers_bot import protocol

    bot = make_bot(include_own=True)
    bot.listen("room-1")
    base = protocol.frame_bytes(protocol.EVENT_SEND,
                                protocol.send_payload("room-1", API_KEY, BOT_ID, ""))
    text = char * ((protocol.MAX_FRAME_BYTES - base) // len(char.encode("utf-8")))
    assert len(text.encode("utf-8")) > 990_000
    start = server.mark()
    assert bot.send("room-1", text, timeout=10) is None  # npm socket.io took the frame
    sent = server.wait_for(lambda e: e.get("event") == "send", start=start)
    assert sent["text"] == text  # intact as Node read it
    assert bot.receive(timeout=10).text == text  # and back, as Node wrote it
    with pytest.raises(ValueError, match="too large"):
        bot.send("room-1", text + char)  # refused before the wire: the link stays up
    assert bot.connected
    assert bot.send("room-1", "still here", timeout=5) is None
