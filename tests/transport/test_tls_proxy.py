"""TLS and HTTP proxies, against the emulator on loopback.

TLS: the emulator serves ``https://`` with a certificate from a throw-away CA
made by ``trustme``; the Bot verifies it with ``ca_certs``, fails without it,
and connects with ``verify_ssl=False``.

Proxies: websocket-client (under python-engineio) takes its proxy from
``http_proxy`` (``ws://``) or ``https_proxy`` (``wss://``), minus the hosts in
``no_proxy``/``NO_PROXY``.  The emulator listens on 127.0.0.2 (the whole
127.0.0.0/8 is loopback on Linux) and :class:`ConnectProxy`, a small HTTP
CONNECT proxy on 127.0.0.1, counts the tunnels it opens, so a test can tell
whether the Bot's traffic went through it.  Nothing here connects to a
non-loopback address.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import sys
import threading
import time
from typing import Iterator, List, Optional

import pytest
from helpers import tls_context

from watchers_bot import Bot, ConnectFailed
from watchers_bot.cli import main
from watchers_bot.emulator import Emulator

trustme = pytest.importorskip("trustme")

TOKEN = "tls-proxy-token-3e8c"
API_KEY = "tls-proxy-key-a19f"
BOT_ID = "tls-bot"
WAIT = 10.0  # the longest any single step may take
FAST = {"connect_timeout": 5.0, "ack_timeout": 5.0}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY", "no_proxy", "NO_PROXY")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="binds 127.0.0.2, which is loopback on Linux only")


# --------------------------------------------------------------------------- a CONNECT proxy


class ConnectProxy:
    """A small HTTP CONNECT proxy on 127.0.0.1, one thread per tunnel, bounded.

    ``tunnels`` counts the tunnels opened, ``targets`` records their
    ``host:port``.  With ``refuse=True`` it answers every CONNECT with 403.
    At most ``max_tunnels`` connections are served at once; every socket
    operation has a timeout and :meth:`stop` closes everything and joins its
    threads (bounded).
    """

    HEAD_LIMIT = 8192
    IO_TIMEOUT = 5.0

    def __init__(self, *, refuse: bool = False, max_tunnels: int = 16) -> None:
        self.refuse = refuse
        self.max_tunnels = max_tunnels
        self.tunnels = 0
        self.targets: List[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._accepter = threading.Thread(target=self._accept_loop, name="test-proxy",
                                          daemon=True)

    def __enter__(self) -> "ConnectProxy":
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                busy = sum(t.is_alive() for t in self._threads)
                if busy >= self.max_tunnels:
                    conn.close()
                    continue
                self._sockets.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,),
                                          name="test-proxy-tunnel", daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: Optional[socket.socket] = None
        try:
            conn.settimeout(self.IO_TIMEOUT)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk or len(head) > self.HEAD_LIMIT:
                    return
                head += chunk
            head, rest = head.split(b"\r\n\r\n", 1)
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split()[:2]
            if method != "CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            if self.refuse:
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=self.IO_TIMEOUT)
            with self._lock:
                self._sockets.append(upstream)
                self.tunnels += 1
                self.targets.append(target)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            self._pump(conn, upstream)
        except OSError:
            pass  # a peer went away: the tunnel ends
        finally:
            for sock in (conn, upstream):
                if sock is not None:
                    sock.close()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self._stop.is_set():
            readable, _, _ = select.select(list(peers), [], [], 0.1)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].sendall(data)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accepter.join(2.0)
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(2.0)
        assert not any(t.is_alive() for t in threads), "a proxy thread did not end"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from no proxy variables at all; tests set what they need."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("WATCHERS_") or name == "WEBSOCKET_CLIENT_CA_BUNDLE":
            monkeypatch.delenv(name)


def _server_context(ca: "trustme.CA") -> ssl.SSLContext:
    return tls_context(ca, "127.0.0.1", "127.0.0.2")


@pytest.fixture
def tls_emu(ca: "trustme.CA") -> Iterator[Emulator]:
    server = Emulator(tokens=[TOKEN], api_keys=[API_KEY], ssl_context=_server_context(ca))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def far_emu() -> Iterator[Emulator]:
    """A plain emulator on 127.0.0.2, a loopback address proxies are not skipped for."""
    server = Emulator(tokens=[TOKEN], api_keys=[API_KEY], host="127.0.0.2").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def far_tls_emu(ca: "trustme.CA") -> Iterator[Emulator]:
    server = Emulator(tokens=[TOKEN], api_keys=[API_KEY], host="127.0.0.2",
                      ssl_context=_server_context(ca))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as running:
        yield running


def round_trip(bot: Bot, emu: Emulator, room: str = "room-1") -> None:
    """Listen, receive a human's message, answer it: the whole protocol over the link."""
    bot.listen(room)
    emu.post(room, "hello through the pipes", user_id="alice")
    msg = bot.receive(timeout=WAIT)
    assert msg.text == "hello through the pipes"
    bot.reply(msg, "heard you")
    assert emu.wait_for_sent(1, timeout=WAIT)[0].text == "heard you"


def as_wss(url: str) -> str:
    return url.replace("https://", "wss://", 1)


# --------------------------------------------------------------------------- TLS


def test_wss_with_the_ca_bundle(tls_emu: Emulator, ca_file: str) -> None:
    assert tls_emu.url.startswith("https://127.0.0.1:")
    with Bot(TOKEN, API_KEY, BOT_ID, url=as_wss(tls_emu.url), ca_certs=ca_file, **FAST) as bot:
        round_trip(bot, tls_emu)


def test_https_url_with_the_ca_bundle(tls_emu: Emulator, ca_file: str) -> None:
    with Bot(TOKEN, API_KEY, BOT_ID, url=tls_emu.url, ca_certs=ca_file, **FAST) as bot:
        bot.connect()
        assert bot.connected


def test_unverifiable_certificate_fails_to_connect(tls_emu: Emulator) -> None:
    bot = Bot(TOKEN, API_KEY, BOT_ID, url=as_wss(tls_emu.url), connect_timeout=1.0)
    with bot, pytest.raises(ConnectFailed) as info:
        bot.connect()
    text = str(info.value)
    assert "\n" not in text
    assert tls_emu.url.split("://")[1] in text  # says where
    assert tls_emu.connections == 0  # never got past the handshake


def test_unverifiable_certificate_error_says_why_at_once(tls_emu: Emulator) -> None:
    bot = Bot(TOKEN, API_KEY, BOT_ID, url=as_wss(tls_emu.url), connect_timeout=5.0)
    start = time.monotonic()
    with bot, pytest.raises(ConnectFailed, match=r"(?i)certificate") as info:
        bot.connect()
    assert not info.value.retryable
    assert time.monotonic() - start < 2.5  # not retried until connect_timeout


def test_verify_ssl_false_connects(tls_emu: Emulator) -> None:
    with Bot(TOKEN, API_KEY, BOT_ID, url=as_wss(tls_emu.url), verify_ssl=False, **FAST) as bot:
        round_trip(bot, tls_emu)


def test_a_wrong_ca_bundle_is_not_trusted(tls_emu: Emulator, tmp_path: "os.PathLike[str]") -> None:
    other = os.path.join(tmp_path, "other-ca.pem")
    trustme.CA().cert_pem.write_to_path(other)
    with Bot(TOKEN, API_KEY, BOT_ID, url=as_wss(tls_emu.url), ca_certs=other,
             connect_timeout=1.0) as bot, pytest.raises(ConnectFailed):
        bot.connect()


def test_cli_listen_takes_the_ca_bundle(
    tls_emu: Emulator, ca_file: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    def post() -> None:
        tls_emu.wait_for_listeners("r", 1, timeout=WAIT)
        tls_emu.post("r", "over tls", user_id="bob")

    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    code = main(["-q", "listen", "r", "--pretty", "--count", "1", "--timeout", str(WAIT),
                 "--url", tls_emu.url, "--token", TOKEN, "--api-key", API_KEY,
                 "--ca-certs", ca_file])
    poster.join(WAIT)
    assert code == 0
    assert capsys.readouterr().out.rstrip().endswith("  r  bob: over tls")


@pytest.mark.parametrize("url", ["ws://bot.example.com/", "http://10.1.2.3:8765/",
                                 "ws://127.0.0.1.example.com/"])
def test_unencrypted_remote_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unencrypted"):
        Bot(TOKEN, API_KEY, BOT_ID, url=url)


@pytest.mark.parametrize("url", ["ws://bot.example.com/", "http://10.1.2.3:8765/"])
def test_unencrypted_remote_url_is_accepted_when_allowed(url: str) -> None:
    bot = Bot(TOKEN, API_KEY, BOT_ID, url=url, allow_insecure=True)  # construction only
    try:
        assert bot.url == url
        assert bot.state == "idle"
    finally:
        bot.close()


@pytest.mark.parametrize("url", ["ws://127.0.0.1:1/", "http://localhost:1/",
                                 "ws://127.0.0.2:1/", "ws://[::1]:1/", "wss://bot.example.com/"])
def test_loopback_or_encrypted_urls_need_no_permission(url: str) -> None:
    Bot(TOKEN, API_KEY, BOT_ID, url=url).close()  # construction only


# --------------------------------------------------------------------------- proxies


def test_ws_goes_through_http_proxy(
    far_emu: Emulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    with Bot(TOKEN, API_KEY, BOT_ID, url=far_emu.url, **FAST) as bot:
        round_trip(bot, far_emu)
    assert proxy.tunnels >= 1
    assert set(proxy.targets) == {f"127.0.0.2:{far_emu.port}"}


def test_wss_goes_through_https_proxy(
    far_tls_emu: Emulator, proxy: ConnectProxy, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")  # the wrong one for wss: unused
    with Bot(TOKEN, API_KEY, BOT_ID, url=as_wss(far_tls_emu.url), ca_certs=ca_file,
             **FAST) as bot:
        round_trip(bot, far_tls_emu)
    assert proxy.tunnels >= 1
    assert set(proxy.targets) == {f"127.0.0.2:{far_tls_emu.port}"}


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_bypasses_the_proxy(
    far_emu: Emulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv(variable, "127.0.0.2")
    with Bot(TOKEN, API_KEY, BOT_ID, url=far_emu.url, **FAST) as bot:
        round_trip(bot, far_emu)
    assert proxy.tunnels == 0


def test_a_refusing_proxy_fails_the_connection(
    far_emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectProxy(refuse=True) as refusing:
        monkeypatch.setenv("http_proxy", refusing.url)
        bot = Bot(TOKEN, API_KEY, BOT_ID, url=far_emu.url, connect_timeout=1.0)
        with bot, pytest.raises(ConnectFailed):
            bot.connect()
    assert far_emu.connections == 0


# --------------------------------------------------------------------------- doctor and proxies


def _doctor_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> "tuple[int, dict]":
    code = main(["doctor", "--timeout", "5", "--token", TOKEN, "--api-key", API_KEY,
                 "--bot-id", BOT_ID, *argv])
    out = capsys.readouterr().out
    checks = {}
    for line in out.splitlines()[:-1]:
        status, name, detail = line.split(None, 2)
        checks[name] = (status, detail)
    return code, checks


def test_doctor_through_the_proxy(
    far_tls_emu: Emulator, proxy: ConnectProxy, ca_file: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    code, checks = _doctor_lines(capsys, "--url", far_tls_emu.url, "--ca-certs", ca_file,
                                 "--room", "r", "--send", "via proxy")
    assert code == 0, {name: check for name, check in checks.items() if check[0] != "ok"}
    assert checks["proxy"][1].startswith(f"through 127.0.0.1:{proxy.port} (from https_proxy")
    assert checks["dns"][1].startswith("proxy 127.0.0.1 -> 127.0.0.1")
    assert f"tunnel to 127.0.0.2:{far_tls_emu.port} opened" in checks["tcp"][1]
    assert checks["tls"][0] == "ok"
    assert proxy.tunnels >= 2  # the doctor's own TLS probe, then the bot's connection


def test_doctor_with_no_proxy(
    far_emu: Emulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.2")
    code, checks = _doctor_lines(capsys, "--url", far_emu.url)
    assert code == 0, checks
    assert checks["proxy"] == ("ok", "direct: NO_PROXY matches 127.0.0.2")
    assert proxy.tunnels == 0


def test_doctor_refused_tunnel(
    far_emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with ConnectProxy(refuse=True) as refusing:
        monkeypatch.setenv("http_proxy", refusing.url)
        code, checks = _doctor_lines(capsys, "--url", far_emu.url)
    assert code == 1
    assert checks["tcp"] == (
        "FAIL", f"the proxy refused the tunnel to 127.0.0.2:{far_emu.port}: HTTP/1.1 403 Forbidden"
    )
