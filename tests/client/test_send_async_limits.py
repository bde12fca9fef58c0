"""send_async keeps the send_rate and retries rate-limit refusals like send, without
blocking its caller; a refusal that is retried is counted only if the send finally fails."""

import pytest
from helpers import make_bot

from watchers_bot import RateLimited, SendRate


def test_send_async_waits_for_its_turn_in_the_future_not_in_the_caller(emulator):
    with make_bot(emulator, send_rate=SendRate(total=1, burst=1)) as bot:
        bot.connect()
        first = bot.send_async("r", "0")
        second = bot.send_async("r", "1")  # its turn is a second later: it returned anyway
        assert not second.done()
        first.result(5)
        second.result(5)
        assert bot._limiter.waited > 0
        assert bot.stats.sent == 2
        assert bot.stats.send_failures == 0
    assert [s.text for s in emulator.sent] == ["0", "1"]


def test_send_async_without_a_turn_in_its_timeout_fails_not_posted(emulator):
    with make_bot(emulator, send_rate=SendRate(per_room=0.05)) as bot:
        bot.send_async("a", "a1").result(5)
        future = bot.send_async("a", "a2", timeout=0.3)  # returns at once
        with pytest.raises(RateLimited, match=r"not posted.*send_rate"):
            future.result(5)
    assert [s.text for s in emulator.sent] == ["a1"]


def test_send_async_retries_a_refusal_after_the_hint(emulator):
    emulator.set_rate_limit(4, burst=1)
    with make_bot(emulator) as bot:
        futures = [bot.send_async("r", f"m{i}") for i in range(3)]
        for future in futures:
            future.result(5)
        assert bot.stats.send_failures == 0  # refused, retried, posted: no failure
        assert bot.stats.sent == 3
    assert emulator.rate_limited >= 1
    # None lost, none doubled; pipelined sends that are refused and retried may
    # overtake each other (each waits its own hint).
    assert sorted(s.text for s in emulator.sent) == ["m0", "m1", "m2"]


def test_a_retried_send_counts_one_failure_when_it_finally_fails(emulator):
    emulator.set_rate_limit(0.05, burst=1)  # one send per 20 s
    with make_bot(emulator) as bot:
        bot.send("r", "first")
        with pytest.raises(RateLimited, match=r"not posted.*runs out"):
            bot.send("r", "second", timeout=0.5)
        assert bot.stats.send_failures == 1
        with pytest.raises(RateLimited, match=r"not posted.*runs out"):
            bot.send_async("r", "third", timeout=0.5).result(5)
        assert bot.stats.send_failures == 2
