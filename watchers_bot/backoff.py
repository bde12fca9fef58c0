"""The one backoff formula: capped exponential steps, with jitter."""

from __future__ import annotations

import random

__all__ = ["backoff"]


def backoff(attempt: int, delay: float, max_delay: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    The step doubles per attempt from ``delay`` up to ``max_delay``; the wait
    is drawn between half the step and the full step, so that many clients
    that lost the same server do not all come back at the same instant.
    """
    step = min(max_delay, delay * (2 ** min(attempt, 30)))
    return random.uniform(step / 2, step)
