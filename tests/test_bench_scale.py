"""Keeps bench/scale.py from rotting: its smallest configuration runs with the real parts
and every message is answered once, in order per room. Timings are not asserted."""

import json
import sys
from pathlib import Path

import pytest
from requirements import require, require_module

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.mark.timeout(90)
def test_the_scale_bench_runs_its_smallest_configuration(tmp_path):
    require("redis-server", what="the scale-out bench")
    require_module("celery", extra="celery", what="the scale-out bench")
    from bench import scale

    out = tmp_path / "scale.json"
    assert scale.main(["--workers", "1", "2", "--sleep-ms", "0", "--messages", "100",
                       "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["workers"], r["messages"]) for r in rows] == [(1, 100), (2, 100)]
    assert all(r["answered_once_in_order"] and r["per_second"] > 0 for r in rows)
