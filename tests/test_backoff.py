"""watchers_bot.backoff: the one retry formula (contrib's start retry uses it)."""

import pytest

from watchers_bot.backoff import backoff


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 6, 30, 31, 1000])
def test_the_wait_is_half_to_all_of_a_doubling_capped_step(attempt):
    step = min(30.0, 0.5 * 2 ** min(attempt, 30))
    waits = [backoff(attempt, 0.5, 30.0) for _ in range(200)]
    assert all(step / 2 <= wait <= step for wait in waits)
    assert len(set(waits)) > 1  # jittered: many clients do not retry in step


def test_the_cap_holds_for_any_attempt():
    assert backoff(10**6, 0.5, 2.0) <= 2.0
