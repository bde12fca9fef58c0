"""``watchers-bot doctor`` against the emulator: one line per check, exit 0 only if all passed.

Runs in-process (``main([...])`` and capsys).  Every check is bounded by
``--timeout``; nothing here touches a non-loopback address (the unknown host
is ``nonexistent.invalid``, a reserved name that never resolves, and the
insecure-URL check fails before any network step).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Tuple

import pytest
from helpers import tls_context

from watchers_bot.cli import main
from watchers_bot.emulator import Emulator

trustme = pytest.importorskip("trustme")

TOKEN = "doctor-token-5c1e9a"
API_KEY = "doctor-key-77ab20"
BOT_ID = "doctor-bot"
CHECK_TIMEOUT = "5"
CHECKS = ["config", "endpoint", "proxy", "dns", "tcp", "tls", "socket.io", "listen", "send"]
LINE = re.compile(r"^(ok|FAIL|skip)\s+(\S+)\s+(.*)$")


@pytest.fixture
def tls_emu(ca: "trustme.CA") -> Iterator[Emulator]:
    """An emulator serving TLS with a certificate for 127.0.0.1 only."""
    server = Emulator(tokens=[TOKEN], api_keys=[API_KEY],
                      ssl_context=tls_context(ca, "127.0.0.1")).start()
    try:
        yield server
    finally:
        server.stop()


def run_doctor(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> Tuple[int, Dict[str, Tuple[str, str]], str]:
    """Run doctor; return (exit code, {check: (status, detail)}, everything printed)."""
    code = main(["doctor", "--timeout", CHECK_TIMEOUT, *argv])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    checks: Dict[str, Tuple[str, str]] = {}
    for line in lines[:-1]:
        match = LINE.match(line)
        assert match, f"not a check line: {line!r}"
        checks[match.group(2)] = (match.group(1), match.group(3))
    assert list(checks) == CHECKS, lines  # every check is reported, in order
    assert TOKEN not in captured.out + captured.err
    assert API_KEY not in captured.out + captured.err
    return code, checks, captured.out + captured.err


def statuses(checks: Dict[str, Tuple[str, str]]) -> List[str]:
    return [checks[name][0] for name in CHECKS]


def creds(url: str) -> List[str]:
    return ["--url", url, "--token", TOKEN, "--api-key", API_KEY, "--bot-id", BOT_ID]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- good configurations


def test_good_config_from_the_environment_with_listen_and_send(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in (("WATCHERS_URL", emu.url), ("WATCHERS_TOKEN", TOKEN),
                        ("WATCHERS_API_KEY", API_KEY), ("WATCHERS_BOT_ID", BOT_ID)):
        monkeypatch.setenv(name, value)
    code, checks, out = run_doctor(capsys, "--room", "doc-room", "--send", "doctor says hi")
    assert code == 0, out
    assert statuses(checks) == ["ok"] * 5 + ["skip"] + ["ok"] * 3
    assert checks["config"][1] == (
        "token from WATCHERS_TOKEN, API key from WATCHERS_API_KEY, "
        "bot id from WATCHERS_BOT_ID, url from WATCHERS_URL"
    )
    assert checks["endpoint"][1] == f"{emu.url} (from WATCHERS_URL)"
    assert checks["tls"][1] == "http:// is unencrypted"
    assert "token accepted" in checks["socket.io"][1]
    assert "doc-room acknowledged" in checks["listen"][1]
    assert "acknowledged" in checks["send"][1]
    [sent] = emu.wait_for_sent(1, timeout=5)
    assert (sent.room_id, sent.text, sent.user_id) == ("doc-room", "doctor says hi", BOT_ID)
    assert out.splitlines()[-1] == "all 8 check(s) passed, 1 skipped"


def test_listen_and_send_are_skipped_unless_asked(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks, _ = run_doctor(capsys, *creds(emu.url))
    assert code == 0
    assert checks["listen"] == ("skip", "pass --room ROOM to check listening (and the API key)")
    assert checks["send"][0] == "skip"
    assert emu.sent == []


# --------------------------------------------------------------------------- failures


def test_bad_token_is_explained(emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "not-the-right-token-0000"
    code, checks, out = run_doctor(
        capsys, "--url", emu.url, "--token", wrong, "--api-key", API_KEY, "--room", "r"
    )
    assert code == 1
    status, detail = checks["socket.io"]
    assert status == "FAIL"
    assert detail.startswith("token refused: ")
    assert "invalid bearer token" in detail  # the server's reason
    assert wrong not in out
    assert statuses(checks)[-2:] == ["skip", "skip"]
    assert out.splitlines()[-1].startswith("1 check(s) failed")


def test_bad_api_key_fails_the_listen_check(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks, _ = run_doctor(
        capsys, "--url", emu.url, "--token", TOKEN, "--api-key", "wrong-api-key", "--room", "r"
    )
    assert code == 1
    assert checks["socket.io"][0] == "ok"  # the API key is only checked by requests
    status, detail = checks["listen"]
    assert status == "FAIL"
    assert "check the API key" in detail


def test_missing_configuration_names_the_variables(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks, _ = run_doctor(capsys, "--url", emu.url, "--room", "r", "--send", "x")
    assert code == 1
    assert checks["config"] == (
        "FAIL",
        "not set: token (WATCHERS_TOKEN or --token), API key (WATCHERS_API_KEY or --api-key), "
        "bot id (WATCHERS_BOT_ID or --bot-id)",
    )
    # The network checks need no secret and still run.
    assert statuses(checks)[1:5] == ["ok"] * 4
    assert statuses(checks)[6:] == ["skip"] * 3


def test_unreachable_port(capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    started = time.monotonic()
    code, checks, _ = run_doctor(capsys, *creds(f"http://127.0.0.1:{port}"))
    assert code == 1
    assert checks["tcp"][0] == "FAIL"
    assert checks["tcp"][1].startswith(f"cannot connect to 127.0.0.1:{port}: Connection refused")
    assert statuses(checks)[5:] == ["skip"] * 4
    assert time.monotonic() - started < 5


def test_unknown_host(capsys: pytest.CaptureFixture[str]) -> None:
    code, checks, _ = run_doctor(capsys, *creds("wss://nonexistent.invalid/"))
    assert code == 1
    status, detail = checks["dns"]
    assert status == "FAIL"
    assert detail.startswith("cannot resolve nonexistent.invalid: ")
    assert statuses(checks)[4:] == ["skip"] * 5


def test_unencrypted_remote_url_is_refused_before_any_network_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, checks, _ = run_doctor(capsys, *creds("ws://bot.example.com/"))
    assert code == 1
    status, detail = checks["endpoint"]
    assert status == "FAIL"
    assert "unencrypted" in detail
    assert "--allow-insecure" in detail
    assert statuses(checks)[2:] == ["skip"] * 7


def test_unknown_region(capsys: pytest.CaptureFixture[str]) -> None:
    code, checks, _ = run_doctor(capsys, "--region", "mars", "--token", TOKEN,
                                 "--api-key", API_KEY)
    assert code == 1
    assert checks["endpoint"][0] == "FAIL"
    assert "valid regions: eu, hk, sa, us, za" in (
        checks["endpoint"][1])


def test_send_needs_a_room(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--send", "hi"]) == 2
    assert "--send needs --room" in capsys.readouterr().err


def test_not_a_socketio_server(capsys: pytest.CaptureFixture[str]) -> None:
    """TCP works but nothing speaks Socket.IO there: the socket.io line says so."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        code, checks, _ = run_doctor(capsys, *creds(f"http://127.0.0.1:{port}"),
                                     "--connect-timeout", "1")
    assert code == 1
    assert checks["tcp"][0] == "ok"
    status, detail = checks["socket.io"]
    assert status == "FAIL"
    assert "no Socket.IO connection" in detail


# --------------------------------------------------------------------------- TLS


def test_tls_verified_with_the_ca_bundle(
    tls_emu: Emulator, ca_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tls_emu.url.startswith("https://")
    code, checks, out = run_doctor(capsys, *creds(tls_emu.url), "--ca-certs", ca_file,
                                   "--room", "r")
    assert code == 0, out
    status, detail = checks["tls"]
    assert status == "ok"
    assert "certificate verified for 127.0.0.1" in detail
    assert checks["listen"][0] == "ok"


def test_tls_untrusted_certificate(tls_emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks, _ = run_doctor(capsys, *creds(tls_emu.url))
    assert code == 1
    status, detail = checks["tls"]
    assert status == "FAIL"
    assert detail.startswith("certificate verification failed: ")
    assert "--ca-certs" in detail
    assert statuses(checks)[6:] == ["skip"] * 3


def test_tls_hostname_mismatch(
    tls_emu: Emulator, ca_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = tls_emu.url.replace("127.0.0.1", "localhost")  # the certificate names 127.0.0.1 only
    code, checks, _ = run_doctor(capsys, *creds(url), "--ca-certs", ca_file)
    assert code == 1
    status, detail = checks["tls"]
    assert status == "FAIL"
    assert "localhost" in detail
    assert "another host" in detail


def test_tls_without_verification(tls_emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks, _ = run_doctor(capsys, *creds(tls_emu.url), "--no-verify-ssl")
    assert code == 0
    assert checks["tls"][0] == "ok"
    assert "NOT verified" in checks["tls"][1]
    assert checks["socket.io"][0] == "ok"


def test_tls_unreadable_ca_bundle(
    tls_emu: Emulator, tmp_path: "os.PathLike[str]", capsys: pytest.CaptureFixture[str]
) -> None:
    missing = os.path.join(tmp_path, "nowhere.pem")
    code, checks, _ = run_doctor(capsys, *creds(tls_emu.url), "--ca-certs", missing)
    assert code == 1
    assert checks["tls"] == ("FAIL", f"cannot load the CA bundle {missing}: "
                                     "No such file or directory")


def test_tls_to_a_plain_server(emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    url = emu.url.replace("http://", "https://")
    code, checks, _ = run_doctor(capsys, *creds(url))
    assert code == 1
    status, detail = checks["tls"]
    assert status == "FAIL"
    assert detail.startswith("TLS handshake failed")


# --------------------------------------------------------------------------- as a command


def test_doctor_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "doctor" in capsys.readouterr().out


def test_doctor_as_a_subprocess(emu: Emulator) -> None:
    """``python -m watchers_bot doctor``: exit codes and output of the real command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHERS_")}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "WATCHERS_URL": emu.url, "WATCHERS_TOKEN": TOKEN, "WATCHERS_API_KEY": API_KEY,
                "PYTHONIOENCODING": "utf-8"})
    good = subprocess.run([sys.executable, "-m", "watchers_bot", "doctor", "--room", "r"],
                          capture_output=True, text=True, timeout=30, env=env,
                          stdin=subprocess.DEVNULL)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[-1] == "all 7 check(s) passed, 2 skipped"
    env["WATCHERS_TOKEN"] = "a-refused-token-123"
    bad = subprocess.run([sys.executable, "-m", "watchers_bot", "doctor"],
                         capture_output=True, text=True, timeout=30, env=env,
                         stdin=subprocess.DEVNULL)
    assert bad.returncode == 1
    assert "FAIL  socket.io  token refused: " in bad.stdout
    assert "Traceback" not in bad.stderr
    for secret in (TOKEN, API_KEY, "a-refused-token-123"):
        assert secret not in good.stdout + good.stderr + bad.stdout + bad.stderr
