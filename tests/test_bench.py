"""Keeps bench/ from rotting: its smallest configuration runs, and what it
checks holds (every send acked, every message received, ours in order).

Timings are never asserted here: this machine runs other suites meanwhile.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from requirements import missing, require

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import run as bench  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _check(result, server, clients):
    summary = result["servers"][server]["summary"]
    assert set(summary) == set(clients)
    for kind in clients:
        row = summary[kind]
        assert row["acks_ok"], f"{kind} on {server}: a send was not acked"
        assert row["count_ok"], f"{kind} on {server}: a message was missing"
        for metric in ("seq", "pipe", "burst", "latency_p50", "latency_p99", "connect", "idle"):
            assert row[metric] > 0, (kind, metric)
    assert summary["ours"]["in_order"], "our Bot delivered a burst out of server order"
    report = bench.report(result)
    assert "ours/raw" in report
    assert "burst receive" in report


def test_smallest_configuration_runs_against_the_emulator():
    clients = ["ours", "raw"]
    result = bench.run("smoke", servers=["emulator"], clients=clients, log=lambda line: None)
    _check(result, "emulator", clients)
    summary = result["servers"]["emulator"]["summary"]
    for kind in clients:
        assert summary[kind]["memory"] > 0


def _require_node(what: str) -> None:
    """Skip (fail under WATCHERS_REQUIRE_ALL=1) without node or npm's packages."""
    require("node", what=what)
    if bench.node_available() is None:
        missing(f"{what} need npm's socket.io and socket.io-client in node_modules; "
                f"install them with: npm ci (in {REPO})")


@pytest.mark.node
def test_smallest_configuration_runs_with_node():
    _require_node("the Node bench tests")
    clients = ["ours", "raw", "node"]
    result = bench.run("smoke", servers=["node"], clients=clients,
                       workloads=["seq", "pipe", "burst", "latency", "connect", "idle"],
                       log=lambda line: None)
    _check(result, "node", clients)
    assert result["servers"]["node"]["summary"]["node"]["in_order"]


def test_cli_rejects_unknown_options(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--no-such-option"])
    assert "usage" in capsys.readouterr().err


def test_the_handler_pool_bench_runs_its_smallest_configuration():
    from bench import handlers

    lines = []
    result = handlers.run("smoke", log=lines.append)
    assert set(result["slow"]) == {"1", "2"}
    assert result["noop"]["pool4_msg_s"] > 0
    assert result["noop_live"]["bare_msg_s"] > 0
    assert any("ratio" in line for line in lines)


def _check_rooms(result, servers):
    from bench import rooms

    n = rooms.CONFIGS["smoke"]["rooms"]
    assert result["settings"]["rooms"] == n == 50
    assert list(result["servers"]) == servers
    for name in servers:
        for workload in rooms.WORKLOADS:
            assert result["samples"][name][workload], (name, workload)
            assert result["servers"][name][workload] > 0, (name, workload)
    text = rooms.report(result)
    assert "re-listen after a drop" in text
    return text


def test_the_rooms_bench_runs_its_smallest_configuration_on_the_emulator():
    from bench import rooms

    # every check (all rooms acked, the server's count, the reconnect) raises when it fails
    servers = ["emulator"]
    result = rooms.run("smoke", servers=servers, log=lambda line: None)
    _check_rooms(result, servers)


@pytest.mark.node
def test_the_rooms_bench_runs_its_smallest_configuration_on_both_servers(tmp_path):
    from bench import rooms

    _require_node("the rooms bench on npm's server")
    out = tmp_path / "rooms.json"
    assert rooms.main(["--config", "smoke", "--server", "emulator", "--server", "node",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    text = _check_rooms(result, ["emulator", "node"])
    assert "emulator/npm" in text
