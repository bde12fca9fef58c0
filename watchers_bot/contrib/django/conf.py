"""Reading the ``WATCHERS`` setting (with ``WATCHERS_*`` environment variables as fallback)."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ...errors import ConfigError
from .. import parse_rooms

__all__ = ["KEYS", "bot_kwargs", "handler_path", "rooms", "setting"]

#: ``WATCHERS`` keys, each with the environment variable it falls back to.
KEYS = {
    "TOKEN": "WATCHERS_TOKEN",
    "API_KEY": "WATCHERS_API_KEY",
    "BOT_ID": "WATCHERS_BOT_ID",
    "URL": "WATCHERS_URL",
    "REGION": "WATCHERS_REGION",
    "ROOMS": "WATCHERS_ROOMS",
    "HANDLER": "WATCHERS_HANDLER",
}
_BOT_ARGS = {"TOKEN": "token", "API_KEY": "api_key", "BOT_ID": "bot_id", "URL": "url",
             "REGION": "region"}
_REQUIRED = ("TOKEN", "API_KEY")


def _watchers() -> Dict[str, Any]:
    value = getattr(settings, "WATCHERS", None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImproperlyConfigured("settings.WATCHERS must be a dict, "
                                   f"not {type(value).__name__}")
    unknown = set(value) - set(KEYS) - {"OPTIONS"}
    if unknown:
        raise ImproperlyConfigured(
            f"unknown key(s) in settings.WATCHERS: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(set(KEYS) | {'OPTIONS'}))})")
    return value


def setting(key: str) -> Any:
    """``WATCHERS[key]``, or the environment variable named in :data:`KEYS`;
    ``None`` when neither is set (blank strings count as unset)."""
    value = _watchers().get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        var = KEYS.get(key)
        value = os.environ.get(var) if var else None
    if isinstance(value, str):
        value = value.strip() or None
    return value


def _missing(key: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"WATCHERS[{key!r}] is not set: add it to settings.WATCHERS "
        f"(or set the {KEYS[key]} environment variable)")


def bot_kwargs() -> Dict[str, Any]:
    """Keyword arguments for :class:`watchers_bot.Bot` from the settings.

    Raises ``ImproperlyConfigured`` naming a missing required setting.
    """
    kwargs: Dict[str, Any] = {}
    for key, arg in _BOT_ARGS.items():
        value = setting(key)
        if value is not None:
            kwargs[arg] = value
    for key in _REQUIRED:
        if _BOT_ARGS[key] not in kwargs:
            raise _missing(key)
    options = _watchers().get("OPTIONS") or {}
    if not isinstance(options, dict):
        raise ImproperlyConfigured("WATCHERS['OPTIONS'] must be a dict of Bot arguments")
    kwargs.update(options)
    return kwargs


def rooms(override: Optional[Any] = None) -> Tuple[str, ...]:
    """Room ids: ``override`` if given, else ``WATCHERS['ROOMS']`` (a list or a
    comma-separated string), else ``WATCHERS_ROOMS``."""
    value = setting("ROOMS") if override is None else override
    try:
        return parse_rooms(value, "WATCHERS['ROOMS']")
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def handler_path() -> Optional[str]:
    """``WATCHERS['HANDLER']`` (a dotted path), else ``WATCHERS_HANDLER``."""
    value = setting("HANDLER")
    if value is not None and not isinstance(value, str):
        raise ImproperlyConfigured("WATCHERS['HANDLER'] must be a dotted path string")
    return value
