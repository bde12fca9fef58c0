"""The per-room worker pool behind Bot.run and Bot.run_in_thread, against the real emulator."""

import collections
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import client_threads, make_bot, wait_until

ROOMS = [f"room-{i}" for i in range(12)]
PER_ROOM = 15


class Recorder:
    """A handler that sleeps a random short time and records what it saw, and how."""

    def __init__(self, seed=7, sleep_max=0.01):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.sleep_max = sleep_max
        self.seen = collections.defaultdict(list)  # room -> texts in handling order
        self.in_room = collections.Counter()
        self.max_in_room = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def __call__(self, msg):
        with self.lock:
            self.in_room[msg.room_id] += 1
            self.in_flight += 1
            self.max_in_room = max(self.max_in_room, self.in_room[msg.room_id])
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            pause = self.rng.random() * self.sleep_max
        time.sleep(pause)
        with self.lock:
            self.seen[msg.room_id].append(msg.text)
            self.in_room[msg.room_id] -= 1
            self.in_flight -= 1

    def count(self):
        with self.lock:
            return sum(len(v) for v in self.seen.values())


def post_interleaved(emulator, rooms, per_room):
    for i in range(per_room):
        for room in rooms:
            emulator.post(room, f"{room}:{i}")


def test_rooms_run_in_parallel_each_in_order_nothing_lost_or_doubled(emulator):
    rec = Recorder()
    with make_bot(emulator) as bot:
        bot.listen(*ROOMS)
        handle = bot.run_in_thread(rec, workers=4)
        assert handle.workers == 4
        post_interleaved(emulator, ROOMS, PER_ROOM)
        wait_until(lambda: rec.count() == len(ROOMS) * PER_ROOM, timeout=30, what="all handled")
        assert handle.stop(5)
    for room in ROOMS:
        assert rec.seen[room] == [f"{room}:{i}" for i in range(PER_ROOM)]  # order, no dup, no loss
    assert rec.max_in_room == 1
    assert rec.max_in_flight >= 2  # rooms really ran at once
    assert rec.max_in_flight <= 4
    assert handle.handled == len(ROOMS) * PER_ROOM
    assert handle.errors == 0


def test_one_worker_is_one_message_at_a_time_in_server_order(emulator):
    rec = Recorder(sleep_max=0.002)
    with make_bot(emulator) as bot:
        bot.listen("a", "b")
        handle = bot.run_in_thread(rec)
        for i in range(20):
            emulator.post("a" if i % 2 else "b", str(i))
        wait_until(lambda: rec.count() == 20, what="all handled")
        handle.stop(5)
    assert rec.max_in_flight == 1
    assert rec.seen["a"] == [str(i) for i in range(1, 20, 2)]


def test_returned_text_is_the_reply_in_the_room(emulator):
    def handler(msg, ctx):
        assert ctx.room_id == msg.room_id
        assert ctx.bot is bot
        return None if msg.text == "quiet" else "re: " + msg.text

    with make_bot(emulator) as bot:
        bot.listen("r1", "r2")
        handle = bot.run_in_thread(handler, workers=2)
        emulator.post("r1", "one")
        emulator.post("r2", "quiet")
        emulator.post("r2", "two")
        sent = emulator.wait_for_sent(2)
        handle.stop(5)
    assert sorted((s.room_id, s.text) for s in sent) == [("r1", "re: one"), ("r2", "re: two")]
    assert bot.stats.sent == 2


def test_a_raising_handler_is_logged_with_traceback_and_the_room_goes_on(emulator, caplog):
    def handler(msg):
        if msg.text == "boom":
            raise RuntimeError("handler bug")
        return "ok " + msg.text

    caplog.set_level(logging.ERROR, logger="watchers_bot.handler")
    with make_bot(emulator) as bot:
        bot.listen("r")
        handle = bot.run_in_thread(handler, workers=2)
        for text in ("boom", "after"):
            emulator.post("r", text)
        assert [s.text for s in emulator.wait_for_sent(1)] == ["ok after"]
        wait_until(lambda: handle.errors == 1 and handle.handled == 1, what="counts")
        handle.stop(5)
    records = [r for r in caplog.records if r.name == "watchers_bot.handler"]
    assert records
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info
    assert "handler bug" in caplog.text
    assert "room 'r'" in caplog.text


def test_a_failing_reply_says_it_was_not_posted(emulator, caplog):
    caplog.set_level(logging.ERROR, logger="watchers_bot.handler")
    with make_bot(emulator) as bot:
        bot.listen("r")
        handle = bot.run_in_thread(lambda msg: "", workers=2)  # empty text: refused before sending
        emulator.post("r", "x")
        wait_until(lambda: handle.reply_failures == 1, what="reply failure")
        handle.stop(5)
    assert "was not posted" in caplog.text
    assert emulator.sent == []


def test_the_watchdog_reports_a_slow_handler_once_with_its_stack(emulator, caplog):
    release = threading.Event()

    def slow_model_call(msg):
        release.wait(10)

    caplog.set_level(logging.WARNING, logger="watchers_bot.handler")
    with make_bot(emulator) as bot:
        bot.listen("slow-room")
        handle = bot.run_in_thread(slow_model_call, workers=2, slow_after=0.2)
        emulator.post("slow-room", "hi")
        wait_until(lambda: handle.slow_reports == 1, what="watchdog report")
        time.sleep(0.6)  # several watchdog rounds: still one report
        assert handle.slow_reports == 1
        release.set()
        handle.stop(5)
    text = caplog.text
    assert "slow-room" in text
    assert "slow_model_call" in text
    assert "release.wait" in text


def test_close_mid_handler_loses_nothing_and_leaves_no_thread(emulator):
    before = client_threads()
    started = threading.Event()
    release = threading.Event()
    handled = []

    def handler(msg):
        started.set()
        handled.append(msg.text)
        release.wait(5)

    bot = make_bot(emulator)
    bot.listen("a", "b")
    handle = bot.run_in_thread(handler, workers=2)
    for i in range(10):
        emulator.post("a", f"a{i}")
    emulator.post("b", "b0")
    wait_until(lambda: len(handled) == 2, what="both rooms in flight")
    threading.Timer(0.2, release.set).start()
    bot.close()  # lands while two handlers run
    assert handle.join(5)
    assert not handle.running
    stats = bot.stats
    assert len(handled) == len(set(handled))
    assert len(handled) + stats.dropped == 11  # every message handled once or counted
    assert stats.backlog == 0
    wait_until(lambda: client_threads() <= before, what="threads gone")


def test_stop_gives_unstarted_messages_back_in_order(emulator):
    release = threading.Event()
    handled = []

    def handler(msg):
        handled.append(msg.text)
        release.wait(5)

    with make_bot(emulator) as bot:
        bot.listen("a")
        handle = bot.run_in_thread(handler, workers=3)
        for i in range(5):
            emulator.post("a", str(i))
        wait_until(lambda: handle.backlog() == {"a": 4}, what="backlog")
        health = bot.health()
        assert health.backlog == {"a": 4}
        assert health.oldest_wait is not None
        assert bot.stats.backlog == 4
        release.set()
        handle.stop(5)  # may have handled a few more meanwhile
        rest = [bot.receive(timeout=5).text for _ in range(5 - len(handled))]
    assert handled + rest == [str(i) for i in range(5)]


def test_a_full_backlog_drops_the_oldest_and_counts_it(emulator):
    release = threading.Event()
    handled = []

    def handler(msg):
        handled.append(msg.text)
        release.wait(5)

    with make_bot(emulator) as bot:
        bot.listen("a")
        handle = bot.run_in_thread(handler, backlog=3)
        emulator.post("a", "0")
        wait_until(lambda: handled == ["0"], what="first in flight")
        for i in range(1, 7):
            emulator.post("a", str(i))
        wait_until(lambda: bot.stats.dropped == 3, what="drops")
        assert handle.backlog() == {"a": 3}
        assert handle.dropped == 3
        release.set()
        wait_until(lambda: len(handled) == 4, what="rest handled")
        handle.stop(5)
    assert handled == ["0", "4", "5", "6"]


def test_arguments_are_checked(emulator):
    with make_bot(emulator) as bot:
        with pytest.raises(TypeError, match="workers"):
            bot.run_in_thread(lambda m: None, workers="4")
        with pytest.raises(ValueError, match="workers"):
            bot.run_in_thread(lambda m: None, workers=0)
        with pytest.raises(ValueError, match="backlog"):
            bot.run_in_thread(lambda m: None, backlog=-1)
        with pytest.raises(ValueError, match="slow_after"):
            bot.run(lambda m: None, slow_after=0)


def test_run_blocks_until_close_from_another_thread(emulator):
    before = client_threads()
    bot = make_bot(emulator)
    bot.listen("r")
    emulator.post("r", "hi")
    threading.Thread(target=lambda: (emulator.wait_for_sent(1), bot.close())).start()
    bot.run(lambda msg: "re: " + msg.text, workers=2)
    assert bot.closed
    assert [s.text for s in emulator.sent] == ["re: hi"]
    wait_until(lambda: client_threads() <= before, what="threads gone")


RUN_SCRIPT = textwrap.dedent("""
    import sys, threading
    from watchers_bot import Bot
    bot = Bot("test-token", "test-key", "bot-1", url=sys.argv[1])
    bot.listen("r")
    bot.run(lambda msg: "re: " + msg.text, workers=4)
    left = [t.name for t in threading.enumerate() if t.name.startswith("watchers-bot-handler")]
    print("returned", left, flush=True)
    bot.close()
""")


def test_sigint_ends_run_cleanly_in_a_subprocess(emulator, tmp_path):
    script = tmp_path / "run_bot.py"
    script.write_text(RUN_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, str(script), emulator.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        # not proc.stdout.readline(): it has no timeout
        emulator.wait_for_listeners("r", timeout=20)
        emulator.post("r", "hi")
        emulator.wait_for_sent(1, timeout=10)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "returned []" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("landing", ["watchers-bot-handler-1", "watchers-bot-handler-dispatch"])
def test_ctrl_c_while_run_starts_its_threads_still_stops_cleanly(emulator, monkeypatch, landing):
    """SIGINT raises KeyboardInterrupt in the main thread wherever it is, also inside a
    Thread.start() of run()'s pool (seen in CI: a traceback, exit code -2)."""
    bot = make_bot(emulator)
    bot.connect()
    real_start = threading.Thread.start

    def start(self):
        real_start(self)
        if self.name == landing:
            raise KeyboardInterrupt  # what the signal handler raises, where it lands

    monkeypatch.setattr(threading.Thread, "start", start)
    try:
        bot.run(lambda msg: None, workers=3, stop_timeout=5)  # returns: no exception
    finally:
        monkeypatch.undo()
        bot.close()
    left = [t.name for t in threading.enumerate() if t.name.startswith("watchers-bot-handler")]
    assert left == []
