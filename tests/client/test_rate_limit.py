"""Send rate limits: reading refusals, retrying after the hint, the client-side limiter."""

import pytest
from helpers import make_bot

from watchers_bot import RateLimited, SendRate, ServerError
from watchers_bot.protocol import read_send_ack


@pytest.mark.parametrize(("answer", "hint"), [
    ({"status": "error", "statusCode": 429, "message": "Too Many Requests", "retryAfter": 2},
     2.0),
    ({"error": {"code": 429, "message": "slow down", "retry_after": "1.5"}}, 1.5),
    ({"code": "E_LIMIT", "message": "rate limit exceeded"}, None),
    ({"success": False, "message": "x", "retryAfterMs": 250}, 0.25),
    ("Too many requests", None),
])
def test_rate_limit_refusals_are_read_with_their_hint(answer, hint):
    with pytest.raises(RateLimited) as info:
        read_send_ack((answer,))
    assert info.value.retry_after == hint


def test_other_errors_are_not_rate_limits():
    with pytest.raises(ServerError) as info:
        read_send_ack(({"statusCode": 500, "message": "Internal server error"},))
    assert not isinstance(info.value, RateLimited)


def test_a_refused_send_is_retried_after_the_hint_and_posted_once(emulator):
    emulator.set_rate_limit(4, burst=1)
    with make_bot(emulator) as bot:
        for i in range(3):
            bot.send("r", f"m{i}")  # each waits the hint when refused, then goes through
    assert emulator.rate_limited >= 1  # the limit really refused some
    assert [s.text for s in emulator.sent] == ["m0", "m1", "m2"]  # none lost, none doubled


def test_without_a_hint_the_send_waits_a_default_and_retries(emulator):
    emulator.set_rate_limit(2, burst=1, retry_after=False)
    with make_bot(emulator) as bot:
        bot.send("r", "one")
        bot.send("r", "two", timeout=4)
    assert emulator.rate_limited >= 1
    assert [s.text for s in emulator.sent] == ["one", "two"]


def test_when_the_deadline_runs_out_the_error_says_not_posted(emulator):
    emulator.set_rate_limit(0.05, burst=1)  # one send per 20 s
    with make_bot(emulator) as bot:
        bot.send("r", "first")
        with pytest.raises(RateLimited, match=r"not posted.*runs out") as info:
            bot.send("r", "second", timeout=0.5)
    assert info.value.retry_after is not None
    assert info.value.retry_after > 0.5
    assert info.value.message == "Too Many Requests"  # the server's own text is kept
    assert [s.text for s in emulator.sent] == ["first"]


def test_the_client_limiter_is_per_room_and_total(emulator):
    with make_bot(emulator, send_rate=SendRate(per_room=0.05)) as bot:
        bot.send("a", "a1")
        bot.send("b", "b1")  # another room has its own bucket
        with pytest.raises(RateLimited, match=r"send_rate.*'a'"):
            bot.send("a", "a2", timeout=0.3)
    with make_bot(emulator, send_rate=0.05) as bot:  # a number: the total rate
        bot.send("c", "c1")
        with pytest.raises(RateLimited, match="send_rate"):
            bot.send("d", "d1", timeout=0.3)
    assert [s.text for s in emulator.sent] == ["a1", "b1", "c1"]
    assert emulator.rate_limited == 0


def test_the_client_limiter_waits_for_its_turn_within_the_timeout(emulator):
    with make_bot(emulator, send_rate=SendRate(total=20, burst=1)) as bot:
        for i in range(4):
            bot.send("r", str(i))
        assert bot._limiter.waited > 0  # later sends waited for a token
    assert [s.text for s in emulator.sent] == ["0", "1", "2", "3"]


def test_bad_rates_are_refused_naming_the_argument(emulator):
    with pytest.raises(TypeError, match="send_rate"):
        make_bot(emulator, send_rate="fast")
    with pytest.raises(ValueError, match="per_room"):
        SendRate(per_room=0)
    with pytest.raises(ValueError, match="per_second"):
        emulator.set_rate_limit(-1)
