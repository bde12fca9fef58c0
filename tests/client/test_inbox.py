"""The inbox between the socket thread and readers (pure threading, no sockets)."""

import queue
import threading

import pytest

from watchers_bot.client.inbox import CLOSED, Inbox


def test_fifo_and_counts():
    box = Inbox(10)
    for i in range(5):
        assert box.offer(i)
    assert [box.take(0.1) for _ in range(5)] == list(range(5))
    assert box.delivered == 5
    assert box.dropped == 0


def test_drop_oldest_keeps_the_newest_and_counts(caplog):
    box = Inbox(3, "drop_oldest")
    results = [box.offer(i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert [box.take(0.1) for _ in range(3)] == [2, 3, 4]
    assert box.dropped == 2
    assert "dropped" in caplog.text


def test_drop_newest_keeps_the_oldest():
    box = Inbox(3, "drop_newest")
    for i in range(5):
        box.offer(i)
    assert [box.take(0.1) for _ in range(3)] == [0, 1, 2]
    assert box.dropped == 2


def test_unbounded():
    box = Inbox(0)
    for i in range(50_000):
        box.offer(i)
    assert box.qsize() == 50_000
    assert box.dropped == 0


def test_take_times_out():
    with pytest.raises(queue.Empty):
        Inbox(1).take(0.05)


def test_close_wakes_every_reader_and_counts_unread():
    box = Inbox(10)
    results = []
    readers = [threading.Thread(target=lambda: results.append(box.take(5))) for _ in range(3)]
    for r in readers:
        r.start()
    box_unread = Inbox(10)
    box_unread.offer("x")
    assert box_unread.close() == 1
    assert box_unread.dropped == 1
    box.close()
    for r in readers:
        r.join(5)
    assert results == [CLOSED] * 3
    assert box.take(0) is CLOSED
    assert not box.offer("late")
    assert box.dropped == 1


def test_fail_lets_readers_drain_then_raises():
    box = Inbox(10)
    box.offer(1)
    box.offer(2)
    err = RuntimeError("gave up")
    box.fail(err)
    assert box.take(0.1) == 1
    assert box.take(0.1) == 2
    with pytest.raises(RuntimeError, match="gave up"):
        box.take(0.1)


def test_bad_policy():
    with pytest.raises(ValueError, match="overflow"):
        Inbox(1, "block")
