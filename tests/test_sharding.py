"""Shard specs: stable room ownership, clear errors, and ``listen --shard``."""

import os
import subprocess
import sys
import zlib

import pytest

from watchers_bot.sharding import Shard, shard_of


def test_parse_and_str_round_trip():
    shard = Shard.parse("2/8")
    assert (shard.index, shard.count) == (2, 8)
    assert str(shard) == "2/8"


@pytest.mark.parametrize("spec", ["", "2", "8/8", "-1/4", "a/4", "1/0", "1/2/3"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(spec)


def test_every_room_has_exactly_one_owner():
    rooms = [f"room-{i}" for i in range(500)]
    shards = [Shard(i, 4) for i in range(4)]
    for room in rooms:
        assert sum(s.owns(room) for s in shards) == 1
    sizes = [len(s.select(rooms)) for s in shards]
    assert min(sizes) > 80  # crc32 spreads rooms; none is starved


def test_ownership_is_stable_across_processes():
    # Python's hash() is salted per process; the shard of a room must not be.
    code = "from watchers_bot.sharding import shard_of; print(shard_of('room-42', 8))"
    answers = {subprocess.check_output([sys.executable, "-c", code], text=True,
                                       env={"PYTHONHASHSEED": str(seed),
                                            "PYTHONPATH": os.pathsep.join(sys.path)}).strip()
               for seed in (1, 2, 3)}
    assert answers == {str(zlib.crc32(b"room-42") % 8)} == {str(shard_of("room-42", 8))}


def test_room_id_type_is_checked():
    with pytest.raises(TypeError, match="room_id"):
        Shard(0, 2).owns(42)  # type: ignore[arg-type]
