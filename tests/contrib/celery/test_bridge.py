"""The Celery bridge with the real parts: redis-server, ``celery worker`` processes, listener
processes and the emulator. Workers and listeners are killed with SIGKILL mid-run; the
emulator's records (what the server accepted, in the order it accepted it) are the judge.
"""

import collections
import time

import pytest
from requirements import require_module

require_module("celery", extra="celery", what="the Celery bridge tests")

from celery_cluster import (  # noqa: E402
    KEY,
    TOKEN,
    cluster_env,
    kill_group,
    start_listener,
    start_worker,
)

from watchers_bot.emulator import EVENT_SEND  # noqa: E402


def lanes_of(redis_server):
    from watchers_bot.contrib.celery import Lanes

    return Lanes(redis_server.client())


def wait_until(predicate, timeout, what):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def post_rounds(emu, rooms, rounds):
    """Post ``rounds`` messages in every room, interleaved; text -> incoming message id."""
    ids = {}
    for i in range(rounds):
        for room in rooms:
            text = f"{room}#{i}"
            ids[text] = emu.post(room, text)["message"]["id"]
    return ids


def replies(emu):
    return [m for m in emu.sent if m.text.startswith("re:")]


def check_answers(emu, rooms, rounds, ids, uncertain):
    """Every message answered, in order per room; a second answer only where the bridge
    reported the reply's fate unknown (a worker killed between the send and its record)."""
    got = replies(emu)
    counts = collections.Counter(m.text[3:] for m in got)
    expected = {f"{room}#{i}" for room in rooms for i in range(rounds)}
    assert set(counts) == expected, f"missing: {sorted(expected - set(counts))[:10]}"
    twice = {text for text, n in counts.items() if n > 1}
    uncertain_ids = {entry.rsplit(":", 1)[1] for entry in uncertain}
    assert all(n <= 2 for n in counts.values())
    assert {str(ids[text]) for text in twice} <= uncertain_ids
    per_room = collections.defaultdict(list)
    for m in got:
        room, _, seq = m.text[3:].partition("#")
        assert m.room_id == room
        seq = int(seq)
        if not (per_room[room] and per_room[room][-1] == seq):  # a re-sent reply: adjacent
            per_room[room].append(seq)
    for room in rooms:
        assert per_room[room] == list(range(rounds)), f"room {room} out of order"
    return twice


@pytest.mark.timeout(90)
def test_two_shards_three_workers_one_killed(redis_server, emu, procs, tmp_path):
    rooms = [f"room-{n}" for n in range(50)]
    rounds = 40  # 2,000 messages
    env = cluster_env(redis_server.url, emu, TOKEN, KEY)
    workers = [start_worker(f"w{n}", env, log_dir=str(tmp_path)) for n in range(3)]
    procs.extend(workers)
    for n in range(2):
        procs.append(start_listener(f"l{n}", env, rooms, shard=f"{n}/2", log_dir=str(tmp_path)))
    wait_until(lambda: all(emu.listeners(r) for r in rooms), 30, "both shards to listen")
    listening = {r: emu.listeners(r) for r in rooms}
    assert all(len(sids) == 1 for sids in listening.values()), "a room with two shards"
    assert len(set().union(*listening.values())) == 2

    ids = post_rounds(emu, rooms, rounds)
    emu.wait_for(lambda e: len(replies(e)) >= 600, 40, what="600 replies")
    kill_group(workers[0])  # SIGKILL, mid-run: the worker and its pool child
    assert len({m.text for m in replies(emu)}) < 2000, "the kill came after the run"
    emu.wait_for(lambda e: len({m.text for m in replies(e)}) >= 2000, 60,
                 what="every message answered")

    lanes = lanes_of(redis_server)
    wait_until(lambda: not lanes.backlog(), 10, "every lane empty")
    twice = check_answers(emu, rooms, rounds, ids, lanes.uncertain())
    stats = lanes.stats()
    assert stats["messages_in"] == 2000
    assert stats.get("duplicates", 0) == 0  # sharded: nobody saw a message twice
    assert stats.get("replies_uncertain", 0) <= 1  # only the one killed worker's last reply
    assert len(twice) <= stats.get("replies_uncertain", 0)
    assert all(len(emu.listeners(r)) == 1 for r in rooms)


@pytest.mark.timeout(90)
def test_redundant_listeners_one_killed(redis_server, emu, procs, tmp_path):
    rooms = [f"r{n}" for n in range(20)]
    rounds = 30  # 600 messages, each received by both listeners until one dies
    env = cluster_env(redis_server.url, emu, TOKEN, KEY)
    procs.extend(start_worker(f"w{n}", env, log_dir=str(tmp_path)) for n in range(2))
    listeners = [start_listener(f"l{n}", env, rooms, log_dir=str(tmp_path)) for n in range(2)]
    procs.extend(listeners)
    wait_until(lambda: all(len(emu.listeners(r)) == 2 for r in rooms), 30,
               "both listeners on every room")

    ids = post_rounds(emu, rooms, rounds // 2)
    emu.wait_for(lambda e: len(replies(e)) >= 100, 40, what="100 replies")
    kill_group(listeners[0])
    wait_until(lambda: all(len(emu.listeners(r)) == 1 for r in rooms), 20,
               "the killed listener's sockets to go")
    ids.update({f"{room}#{i}": emu.post(room, f"{room}#{i}")["message"]["id"]
                for i in range(rounds // 2, rounds) for room in rooms})
    emu.wait_for(lambda e: len({m.text for m in replies(e)}) >= 600, 60,
                 what="every message answered")

    lanes = lanes_of(redis_server)
    wait_until(lambda: not lanes.backlog(), 10, "every lane empty")
    assert lanes.uncertain() == []  # no worker died: nothing may be answered twice
    twice = check_answers(emu, rooms, rounds, ids, [])
    assert twice == set()
    assert len(replies(emu)) == 600
    stats = lanes.stats()
    assert stats["messages_in"] == 600  # each forwarded once ...
    assert stats["duplicates"] >= 100  # ... the other copy counted, not forwarded
    assert stats["replies"] == 600


def _one_room_state(redis_server, emu, state):
    """Leave Redis as a worker killed mid-message leaves it: the message at its lane's
    head, its reply recorded as ``state``; a second message behind it."""
    lanes = lanes_of(redis_server)
    first = emu.post("solo", "first")  # nobody listens: only its payload is used
    second = emu.post("solo", "second")
    for payload in (first, second):
        won, room_key = lanes.claim_push(payload, "proj", "solo", payload["message"]["id"])
        assert won
    lanes.set_reply(room_key, first["message"]["id"], state, "re:first")
    return lanes, room_key, first


@pytest.mark.parametrize(("state", "posts_of_first"), [("replied", 0), ("sending", 1)])
def test_a_task_re_run_after_a_crash(redis_server, emu, procs, tmp_path, state,
                                     posts_of_first):
    lanes, room_key, first = _one_room_state(redis_server, emu, state)
    env = cluster_env(redis_server.url, emu, TOKEN, KEY)
    procs.append(start_worker("w", env, log_dir=str(tmp_path)))
    procs.append(start_listener("l", env, ["solo"], log_dir=str(tmp_path)))  # its sweep kicks
    emu.wait_for(lambda e: any(m.text == "re:second" for m in e.sent), 30,
                 what="the second message answered")
    texts = [m.text for m in emu.sent if m.text.startswith("re:")]
    assert texts == ["re:first"] * posts_of_first + ["re:second"]
    stats = lanes.stats()
    if state == "replied":  # recorded before the crash: never posted again
        assert stats["replies_suppressed"] == 1
        assert lanes.uncertain() == []
    else:  # killed between the send and its record: fate unknown, re-sent and reported
        assert stats["replies_uncertain"] == 1
        assert lanes.uncertain() == [f"{room_key}:{first['message']['id']}"]
    assert stats["handled"] == 1  # the handler ran for "second" only


@pytest.mark.timeout(60)
def test_worker_killed_while_its_reply_waits_for_the_ack(redis_server, emu, procs,
                                                         tmp_path):
    env = cluster_env(redis_server.url, emu, TOKEN, KEY)
    worker = start_worker("w0", env, log_dir=str(tmp_path))
    procs.extend([worker, start_listener("l", env, ["solo"], log_dir=str(tmp_path))])
    emu.wait_for_listeners("solo", 1, timeout=30)
    emu.set_ack(EVENT_SEND, "withhold", times=1)  # posted, never acknowledged
    posted = emu.post("solo", "hello")
    emu.wait_for(lambda e: len(replies(e)) == 1, 30, what="the first reply")
    kill_group(worker)  # the server has the reply; the record says "sending"
    procs.append(start_worker("w1", env, log_dir=str(tmp_path)))
    emu.wait_for(lambda e: len(replies(e)) == 2, 30, what="the re-sent reply")
    lanes = lanes_of(redis_server)
    assert [m.text for m in replies(emu)] == ["re:hello", "re:hello"]
    assert lanes.uncertain() == [f"proj:solo:{posted['message']['id']}"]
    assert lanes.stats()["replies_uncertain"] == 1


def test_a_stopping_listener_hands_on_what_it_received(redis_server, emu):
    import threading

    from celery import Celery

    from watchers_bot import Bot
    from watchers_bot.contrib.celery import Bridge

    bridge = Bridge(Celery("stopping", broker=redis_server.url), lambda msg: None)
    with Bot(TOKEN, KEY, "bot-1", url=emu.url) as bot:
        bot.listen("a")
        for i in range(5):
            emu.post("a", f"m{i}")
        wait_until(lambda: bot.stats.queued == 5, 10, "5 messages in the bot's inbox")
        stop = threading.Event()
        stop.set()  # asked to stop before it even looked
        assert bridge.listen(bot, ["a"], stop=stop) == 5
    lanes = lanes_of(redis_server)
    assert lanes.backlog()["proj:a"][0] == 5
    assert lanes.stats()["messages_in"] == 5


@pytest.mark.timeout(60)
def test_a_failing_handler_is_reported_and_its_room_goes_on(redis_server, emu, procs,
                                                           tmp_path):
    env = cluster_env(redis_server.url, emu, TOKEN, KEY)
    procs.append(start_worker("w", env, log_dir=str(tmp_path)))
    procs.append(start_listener("l", env, ["solo"], log_dir=str(tmp_path)))
    emu.wait_for_listeners("solo", 1, timeout=30)
    emu.post("solo", "boom")
    emu.post("solo", "after")
    emu.wait_for(lambda e: len(replies(e)) == 1, 30, what="the reply to 'after'")
    assert [m.text for m in replies(emu)] == ["re:after"]
    lanes = lanes_of(redis_server)
    assert lanes.stats()["handler_errors"] == 1
    log = (tmp_path / "w.log").read_text()
    assert "the handler failed on message" in log
    assert "RuntimeError: the handler blew up on purpose" in log  # with its traceback


@pytest.mark.timeout(60)
def test_listener_keeps_messages_while_redis_is_down(redis_server, emu, procs,
                                                     tmp_path):
    from redis_server import start_redis

    env = cluster_env(redis_server.url, emu, TOKEN, KEY)
    procs.append(start_worker("w", env, log_dir=str(tmp_path)))
    procs.append(start_listener("l", env, ["solo"], log_dir=str(tmp_path)))
    emu.wait_for_listeners("solo", 1, timeout=30)
    emu.post("solo", "before")
    emu.wait_for(lambda e: len(replies(e)) == 1, 30, what="the first reply")
    redis_server.process.kill()  # Redis goes away (nothing persisted)
    redis_server.process.wait(timeout=10)
    for i in range(3):
        emu.post("solo", f"during-{i}")
    listener_log = tmp_path / "l.log"
    wait_until(lambda: "could not hand message" in listener_log.read_text(), 20,
               "the listener to find Redis gone")  # and keep the message, retrying
    assert len(replies(emu)) == 1
    back = start_redis(str(tmp_path), port=redis_server.port)
    redis_server.process = back.process  # the fixture ends this one
    emu.wait_for(lambda e: len(replies(e)) == 4, 40, what="the messages posted meanwhile")
    assert [m.text for m in replies(emu)] == [
        "re:before", "re:during-0", "re:during-1", "re:during-2"]
