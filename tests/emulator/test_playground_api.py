"""The emulator's control API (the playground's only way to drive it), without a browser.

Real HTTP on loopback against a running emulator and a real Bot; what a page or
``watchers-bot post`` would see.
"""

import http.client
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import KEY, TOKEN, wait_until
from watchers_bot import ServerError
from watchers_bot.control_api import ControlError, call
from watchers_bot.emulator import Transcript, replay
from watchers_bot.emulator.control import control_for

ROOT = Path(__file__).resolve().parents[2]
API = "/_emulator/api/"


def request(emu, method, path, body=None, headers=None, raw_body=None):
    """One HTTP request to the emulator's port; returns (status, decoded JSON or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        data = raw_body if raw_body is not None else (
            None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        text = response.read().decode()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(text)
        return response.status, text
    finally:
        conn.close()


class Events:
    """A Server-Sent Events reader of the control API on its own thread."""

    def __init__(self, emu, after=0):
        self.sock = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
        self.sock.sendall(
            f"GET {API}events?after={after} HTTP/1.1\r\nHost: 127.0.0.1:{emu.port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode())
        self.events = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                for line in buf.split(b"\n")[:-1]:
                    line = line.strip()
                    if line.startswith(b"data: "):
                        with self.lock:
                            self.events.append(json.loads(line[6:]))
                buf = buf.rsplit(b"\n", 1)[-1]
        except OSError:
            return

    def wait_for(self, predicate, what):
        def found():
            with self.lock:
                return [e for e in self.events if predicate(e)]
        wait_until(lambda: bool(found()), what=what)
        return found()

    def close(self):
        self.sock.close()
        self.thread.join(5)


def test_post_as_human_reaches_the_bot_and_its_answer_streams_with_the_ack(emu, echo_bot):
    events = Events(emu)
    try:
        status, answer = request(emu, "POST", API + "post",
                                 {"room": "room-1", "text": "hi", "user": "alice"})
        assert status == 200
        assert answer["posted"]["userId"] == "alice"
        assert emu.wait_for_sent(1)[0].text == "echo: hi"
        [human] = events.wait_for(lambda e: e["kind"] == "message" and e["by"] == "human",
                                  "the human's message")
        assert (human["user"], human["text"], human["room"]) == ("alice", "hi", "room-1")
        [reply] = events.wait_for(lambda e: e["kind"] == "message" and e["by"] == "bot",
                                  "the bot's message")
        assert (reply["user"], reply["text"]) == ("echo-bot", "echo: hi")
        [send] = events.wait_for(
            lambda e: e["kind"] == "packet" and e["event"] == "external/send", "the send")
        assert send["acked"] is True
        assert send["ack_ms"] >= 0
        assert send["payload"]["apiKey"] == "***"  # masked, never the key
        assert KEY not in json.dumps(events.events)
        assert TOKEN not in json.dumps(events.events)
        [listen] = events.wait_for(
            lambda e: e["kind"] == "packet" and e["event"] == "external/listen", "the listen")
        assert listen["ack"] == {"status": "ok", "roomId": "room-1"}
    finally:
        events.close()


@pytest.mark.parametrize("host", [
    "evil.example:{port}",       # DNS rebinding: a name that resolved to 127.0.0.1
    "127.0.0.1:1",               # another port
    "192.168.1.5:{port}",        # not loopback
    "",                          # no Host at all
])
def test_a_request_whose_host_is_not_local_is_refused(emu, host):
    host = host.format(port=emu.port)
    for method, path, body in (("GET", API + "state", None),
                               ("POST", API + "post", {"room": "r", "text": "x"}),
                               ("GET", "/_emulator/", None)):
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
        conn.putrequest(method, path, skip_host=True)
        if host:
            conn.putheader("Host", host)
        data = json.dumps(body).encode() if body else b""
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        response = conn.getresponse()
        assert response.status == 403, (method, path, host)
        assert b"Host" in response.read()
        conn.close()
    assert emu.requests == []
    assert control_for(emu).transcript("r").turns == []


@pytest.mark.parametrize("origin", [
    "http://evil.example", "http://127.0.0.1:1", "https://127.0.0.1:{port}", "null",
])
def test_a_cross_origin_post_is_refused(emu, echo_bot, origin):
    status, answer = request(emu, "POST", API + "post", {"room": "room-1", "text": "x"},
                             headers={"Origin": origin.format(port=emu.port)})
    assert status == 403
    assert "cross-origin" in answer["error"]
    status, _ = request(emu, "POST", API + "drop", {}, headers={"Origin": origin.format(
        port=emu.port)})
    assert status == 403
    assert echo_bot.connected
    assert emu.sent == []


def test_the_emulators_own_origin_and_localhost_are_accepted(emu, echo_bot):
    for origin in (f"http://127.0.0.1:{emu.port}", f"http://localhost:{emu.port}"):
        status, _ = request(emu, "POST", API + "post", {"room": "room-1", "text": "x"},
                            headers={"Origin": origin})
        assert status == 200
    status, _ = request(emu, "GET", API + "state", headers={"Host": f"localhost:{emu.port}"})
    assert status == 200


def test_a_form_post_is_refused(emu):
    # what a cross-site <form> can send without a preflight
    status, answer = request(emu, "POST", API + "post", raw_body=b"room=r&text=x",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    assert "application/json" in answer["error"]


def test_bad_requests_say_what_is_wrong(emu):
    assert request(emu, "POST", API + "post", {"room": "", "text": "x"})[0] == 400
    status, answer = request(emu, "POST", API + "ack", {"event": "external/send",
                                                         "mode": "sometimes"})
    assert status == 400
    assert "mode must be one of" in answer["error"]
    assert request(emu, "POST", API + "nope", {})[0] == 404
    assert request(emu, "GET", "/_emulator/static/../../setup.cfg")[0] == 404


def test_page_and_static_files_are_served(emu):
    status, html = request(emu, "GET", "/_emulator/")
    assert status == 200
    assert "<script" in html
    assert "app.js" in html
    for name in ("app.js", "style.css"):
        status, text = request(emu, "GET", "/_emulator/static/" + name)
        assert status == 200
        assert len(text) > 100


def test_faults_through_the_api(emu, echo_bot):
    emu.wait_for_listeners("room-1")
    connections = emu.connections
    assert request(emu, "POST", API + "drop", {})[1] == {"dropped": 1}
    emu.wait_for_listeners("room-1", timeout=10)  # the bot came back and listens again
    assert emu.connections == connections + 1

    assert request(emu, "POST", API + "ack", {"event": "external/send", "mode": "error",
                                               "times": 1})[0] == 200
    with pytest.raises(ServerError):
        echo_bot.send("room-1", "refused once", timeout=5)
    echo_bot.send("room-1", "fine again", timeout=5)

    events = Events(emu)
    try:
        assert request(emu, "POST", API + "ack", {"event": "external/send", "mode": "exception",
                                                   "error": "boom", "times": 1})[0] == 200
        with pytest.raises(ServerError, match="boom"):
            echo_bot.send("room-1", "exception once", timeout=5)
        [seen] = events.wait_for(
            lambda e: e["kind"] == "packet" and e.get("mode") == "exception", "the exception")
        assert seen["acked"] is False
        assert seen["payload"]["text"] == "exception once"
    finally:
        events.close()

    connections = emu.connections
    assert request(emu, "POST", API + "kick", {})[1] == {"kicked": 1}
    wait_until(lambda: emu.connections > connections, timeout=10, what="reconnect after kick")
    emu.wait_for_listeners("room-1", timeout=10)

    connections = emu.connections
    status, _ = request(emu, "POST", API + "restart", {"down_for": 0.2})
    assert status == 200
    wait_until(lambda: emu.connections > connections, timeout=10, what="reconnect after restart")
    emu.wait_for_listeners("room-1", timeout=10)

    status, answer = request(emu, "POST", API + "push",
                             {"event": "message", "args": [{"roomId": 5}], "room": "room-1"})
    assert (status, answer) == (200, {"pushed": 1})
    assert echo_bot.connected  # a malformed payload does not kill the bot


def test_a_gone_or_stopped_page_leaves_no_stream_behind(emu):
    control = control_for(emu)
    events = Events(emu)
    wait_until(lambda: control.subscribers == 1, what="the stream to open")
    events.close()
    emu.post("room-x", "someone is gone")  # the write to the closed socket fails
    wait_until(lambda: control.subscribers == 0, timeout=15, what="the stream to end")

    events = Events(emu)
    wait_until(lambda: control.subscribers == 1, what="the stream to open")
    emu.stop()
    wait_until(lambda: control.subscribers == 0, what="stop() to end the stream")
    events.close()


def test_a_page_that_does_not_read_never_holds_up_the_emulator(emu, echo_bot):
    control = control_for(emu)
    # a page that opens the stream and never reads from it
    stuck = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(f"GET {API}events HTTP/1.1\r\nHost: 127.0.0.1:{emu.port}\r\n\r\n".encode())
    try:
        wait_until(lambda: control.subscribers == 1, what="the stream to open")
        for n in range(1500):  # more than a page's queue holds
            emu.post("room-1", f"flood {n}", user_id="flood")
        assert len(emu.wait_for_sent(1500, timeout=30)) == 1500  # the bot got every one
    finally:
        stuck.close()
    emu.post("room-2", "after")
    wait_until(lambda: control.subscribers == 0, timeout=15, what="the stuck stream to end")


def test_transcript_saved_and_replayed_from_python(emu, echo_bot, tmp_path):
    for n, (user, text) in enumerate((("alice", "hello"), ("bob", "how are you")), 1):
        emu.post("room-1", text, user_id=user)
        emu.wait_for_sent(n)
    status, saved = request(emu, "GET", API + "transcript?room=room-1")
    assert status == 200
    path = tmp_path / "t.json"
    path.write_text(json.dumps(saved))
    transcript = Transcript.load(path)
    assert [(t.by, t.user, t.text) for t in transcript.turns] == [
        ("human", "alice", "hello"), ("bot", "echo-bot", "echo: hello"),
        ("human", "bob", "how are you"), ("bot", "echo-bot", "echo: how are you")]

    result = replay(emu, transcript)
    assert result.bot_texts() == transcript.bot_texts()
    result = replay(emu, transcript, from_turn=2)
    assert result.bot_texts() == ["echo: how are you"]
    assert [m.text for m in emu.sent] == ["echo: hello", "echo: how are you"] * 2 + [
        "echo: how are you"]


def test_replay_says_which_turn_got_no_answer(emu, tmp_path):
    transcript = Transcript.from_dict({
        "format": "watchers-bot-transcript", "version": 1, "room": "quiet",
        "turns": [{"by": "human", "user": "a", "text": "anyone?"},
                  {"by": "bot", "user": "b", "text": "yes"}]})
    with pytest.raises(TimeoutError, match=r"turn 0 .*expected 1 bot answer"):
        replay(emu, transcript, timeout=0.3)
    with pytest.raises(ValueError, match="format"):
        Transcript.from_dict({"room": "r", "turns": []})


def test_exported_pytest_file_passes_against_the_bot(emu, echo_bot, tmp_path):
    emu.post("room-1", "one", user_id="alice")
    emu.wait_for_sent(1)
    emu.post("room-1", "two", user_id="bob")
    emu.wait_for_sent(2)
    _, saved = request(emu, "GET", API + "transcript?room=room-1")
    (tmp_path / "echo_handler.py").write_text(
        "def handle(msg):\n    return 'echo: ' + msg.text\n")
    status, source = request(emu, "POST", API + "export",
                             {"transcript": saved, "handler": "echo_handler:handle"})
    assert status == 200
    (tmp_path / "test_exported.py").write_text(source)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout

    # and fails against a bot that answers differently
    (tmp_path / "echo_handler.py").write_text("def handle(msg):\n    return 'other'\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr


def run_pytest(folder):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         str(folder)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=50)


def run_cli(*args, url):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    env.pop("WATCHERS_URL", None)
    return subprocess.run([sys.executable, "-m", "watchers_bot", "post", *args, "--url", url],
                          env=env, capture_output=True, text=True, timeout=20)


def test_watchers_bot_post_posts_as_a_human(emu, echo_bot):
    result = run_cli("room-1", "hello from the shell", "--as", "alice", url=emu.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["userId"] == "alice"
    assert "1 bot socket(s) listening" in result.stderr
    [answer] = emu.wait_for_sent(1)
    assert answer.text == "echo: hello from the shell"


def test_watchers_bot_post_loads_neither_the_client_nor_the_emulator(emu, echo_bot):
    # it only talks HTTP to a running emulator: no python-socketio, no werkzeug to load
    code = (
        "import sys\n"
        "from watchers_bot.cli import main\n"
        f"code = main(['post', 'room-1', 'light', '--url', {emu.url!r}])\n"
        "heavy = {'socketio', 'engineio', 'websocket', 'werkzeug', 'watchers_bot.emulator',\n"
        "         'watchers_bot.client'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "sys.exit(code)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    [answer] = emu.wait_for_sent(1)
    assert answer.text == "echo: light"


def test_watchers_bot_post_without_an_emulator_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("room-1", "hi", url=f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "cannot reach the emulator's control API" in result.stderr
    assert "watchers-bot serve" in result.stderr


def test_call_reports_the_servers_reason(emu):
    with pytest.raises(ControlError, match="400: room must be a non-empty string"):
        call(emu.url, "post", {"room": "", "text": "x"})
    assert call(emu.url, "state")["running"] is True


def test_demo_prints_the_page_address(capsys):
    from watchers_bot.cli import main

    assert main(["demo", "--messages", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^# playground page \(this machine only\): "
                     r"http://127\.0\.0\.1:\d+/_emulator/$", out, re.M), out


def test_serve_prints_the_page_and_post_reaches_a_bot_of_another_process():
    """The user's flow: `serve`, a bot with the printed credentials, `post` as alice."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    server = subprocess.Popen(
        [sys.executable, "-m", "watchers_bot", "serve", "--port", "0", "--token", "tok",
         "--api-key", "key"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in server.stdout], daemon=True).start()
    try:
        page = None
        while page is None:
            line = lines.get(timeout=15)
            match = re.search(r"playground page: +(http://127\.0\.0\.1:(\d+)/_emulator/)", line)
            if match:
                page, port = match.group(1), int(match.group(2))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/_emulator/")
        assert conn.getresponse().status == 200
        conn.close()
        from watchers_bot import Bot

        with Bot("tok", "key", "bot-x", url=f"http://127.0.0.1:{port}",
                 connect_timeout=5, ack_timeout=5) as bot:
            bot.listen("room-9")
            result = run_cli("room-9", "from another process", "--as", "alice",
                             url=f"http://127.0.0.1:{port}")
            assert result.returncode == 0, result.stderr
            msg = bot.receive(timeout=5)
            assert (msg.user_id, msg.text) == ("alice", "from another process")
    finally:
        server.terminate()
        server.wait(10)
