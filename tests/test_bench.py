"""Keeps bench/ from rotting: its smallest configuration runs, and what it
checks holds (every send acked, every message received, ours in order).

Timings are never asserted here: this machine runs other suites meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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


@pytest.mark.node
def test_smallest_configuration_runs_with_node():
    if bench.node_available() is None:
        pytest.skip("needs node and `npm ci` (socket.io, socket.io-client in node_modules)")
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
