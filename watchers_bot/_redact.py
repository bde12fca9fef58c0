"""The one secret registry: which keys hold secrets, and how they are masked.

Three things are masked, all here:

* the values of secret-looking keys in a payload (:func:`mask_secrets`: the
  emulator's records, the playground, ``ServerError.raw``);
* secret-looking ``key: value`` pairs and ``Bearer`` headers inside any text,
  in JSON or Python repr form (:func:`redact`: log lines, CLI error lines);
* the exact secret values a bot or the CLI registered (:func:`register_secrets`),
  wherever they appear in a text, whatever key they came under.

Pure: no logging, no I/O.  ``_logging`` builds its filter on :func:`redact`.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any, Iterable, Optional

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRET_KEYS",
    "forget_secrets",
    "is_secret_key",
    "mask_secrets",
    "redact",
    "register_secrets",
]

#: What a masked value is replaced with.
MASK = "***"

#: Keys whose values are secrets, compared without case (``apiKey`` is ``apikey``).
SECRET_KEYS = frozenset({
    "apikey", "api_key", "api-key", "bearer", "token", "authorization", "password", "secret",
})

#: Shorter registered values would mask ordinary words everywhere; the key-value
#: patterns still mask them where they appear under a secret key.
MIN_SECRET_LENGTH = 4


def is_secret_key(key: Any) -> bool:
    """Whether ``key`` names a secret (case-insensitive)."""
    return type(key) is str and key.lower() in SECRET_KEYS


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with the values of secret keys replaced by ``***``.

    Mappings become dicts and tuples become lists (JSON shapes); other values
    are returned as they are.
    """
    kind = type(value)
    if kind is dict or (kind is not str and isinstance(value, Mapping)):
        out = {}
        for k, v in value.items():
            if type(k) is str and k.lower() in SECRET_KEYS:
                out[k] = MASK
            elif type(v) in _SCALARS:
                out[k] = v
            else:
                out[k] = mask_secrets(v)
        return out
    if kind is list or kind is tuple:
        return [v if type(v) in _SCALARS else mask_secrets(v) for v in value]
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})

# --------------------------------------------------------------------------- text

_KEYS = "(?:" + "|".join(re.escape(k) for k in sorted(SECRET_KEYS, key=len, reverse=True)) + ")"
# JSON ("apiKey":"x") and Python repr ('apiKey': 'x') forms.
_VALUE = r"""(?P<v>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
_PAIR = re.compile(
    r"""(?P<k>(?P<q>["'])""" + _KEYS + r"""(?P=q)\s*:\s*)""" + _VALUE, re.IGNORECASE
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")

_lock = threading.Lock()
_registered: "Counter[str]" = Counter()
_pattern: "Optional[re.Pattern[str]]" = None


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that any text :func:`redact` sees has them masked."""
    global _pattern
    with _lock:
        _registered.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)
        _pattern = _compile(_registered)


def forget_secrets(values: Iterable[str]) -> None:
    """Undo one :func:`register_secrets` of these values."""
    global _pattern
    with _lock:
        _registered.subtract(v for v in values if len(v) >= MIN_SECRET_LENGTH)
        for v in [v for v, n in _registered.items() if n <= 0]:
            del _registered[v]
        _pattern = _compile(_registered)


def _compile(values: Iterable[str]) -> "Optional[re.Pattern[str]]":
    # Longest first so that a secret containing another is masked whole.
    alternatives = sorted(set(values), key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile("|".join(re.escape(v) for v in alternatives))


def redact(text: str, values: Iterable[Optional[str]] = ()) -> str:
    """``text`` with every registered secret, every one of ``values`` (each
    also without surrounding whitespace; shorter than :data:`MIN_SECRET_LENGTH`
    ignored), every secret-looking pair and every ``Bearer`` credential masked."""
    extra = {s for v in values if v for s in (v, v.strip()) if len(s) >= MIN_SECRET_LENGTH}
    if extra:
        local = _compile(extra)
        assert local is not None
        text = local.sub(MASK, text)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _PAIR.sub(lambda m: m.group("k") + m.group("q") + MASK + m.group("q"), text)
    return _BEARER.sub(r"\1" + MASK, text)


def _reset_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)
