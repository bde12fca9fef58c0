"""Skip, or in CI fail, a test whose outside requirement is missing.

Tests that need a program this repository cannot install itself (``redis-server``,
``chromium``, Node.js) call :func:`require`. On a developer's machine without it the test
skips with a reason that names the install command; with ``WATCHERS_REQUIRE_ALL=1`` (CI sets
it) the same condition fails the test, so CI proves those tests every time.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn, Optional

import pytest

#: The environment variable that turns missing-requirement skips into failures.
REQUIRE_ALL_ENV = "WATCHERS_REQUIRE_ALL"

#: How each outside program is installed, named in the skip reason.
INSTALL_HINTS = {
    "redis-server": "apt-get update && apt-get install -y redis-server",
    "chromium": "apt-get update && apt-get install -y chromium",
    "node": "install Node.js 20+ (apt-get install -y nodejs npm)",
    "npm": "install Node.js 20+ (apt-get install -y nodejs npm)",
}


def require_all() -> bool:
    """Whether missing requirements fail instead of skipping (``WATCHERS_REQUIRE_ALL=1``)."""
    return os.environ.get(REQUIRE_ALL_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def missing(reason: str) -> NoReturn:
    """Skip the current test with ``reason``, or fail it when :func:`require_all` is on."""
    if require_all():
        pytest.fail(f"{reason} ({REQUIRE_ALL_ENV} is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def require(program: str, *, what: str = "these tests") -> str:
    """The path of ``program`` on PATH; skip (or fail in CI) with its install command if absent."""
    found: Optional[str] = shutil.which(program)
    if found is None:
        hint = INSTALL_HINTS.get(program, f"install {program}")
        missing(f"{what} need `{program}`, which is not on PATH; install it with: {hint}")
    return found


def require_module(module: str, *, extra: str, what: str = "these tests") -> None:
    """Skip (or fail in CI) when the Python package ``module`` from the ``extra`` is missing."""
    try:
        __import__(module)
    except ImportError:
        missing(f"{what} need the Python package `{module}`; install it with: "
                f"python3 -m pip install -e '.[{extra}]'")
