"""Reading the ``WATCHERS`` setting (with ``WATCHERS_*`` environment variables as fallback).

The keys, their variables and the "not set" messages come from
:mod:`watchers_bot.settings`; this module adds where Django keeps them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from ... import settings
from ...errors import ConfigError

__all__ = ["KEYS", "bot_kwargs", "handler_path", "rooms", "setting"]

#: ``WATCHERS`` keys, each with the environment variable it falls back to.
KEYS = {
    s.key: s.env for s in settings.SETTINGS
    if s.argument or s.key in ("ROOMS", "HANDLER")  # RUN_HANDLERS is Flask's
}


def _watchers() -> Dict[str, Any]:
    value = getattr(django_settings, "WATCHERS", None)
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


def _layers() -> List[settings.Layer]:
    watchers = _watchers()
    in_settings = settings.Layer(lambda s: watchers.get(s.key), lambda s: f"WATCHERS[{s.key!r}]")
    return [in_settings, settings.env_layer()]


def setting(key: str) -> Any:
    """``WATCHERS[key]``, or the environment variable named in :data:`KEYS`;
    ``None`` when neither is set (blank strings count as unset)."""
    found = settings.lookup(settings.get(key), _layers())
    return found.value if found.source is not None else None


def bot_kwargs() -> Dict[str, Any]:
    """Keyword arguments for :class:`watchers_bot.Bot` from the settings.

    Raises ``ImproperlyConfigured`` naming a missing required setting.
    """
    try:
        kwargs = settings.bot_arguments(
            _layers(),
            lambda s: f"add it to settings.WATCHERS (or set the {s.env} environment variable)",
            name=lambda s: f"WATCHERS[{s.key!r}]",
        )
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None
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
        return settings.parse_rooms(value, "WATCHERS['ROOMS']")
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def handler_path() -> Optional[str]:
    """``WATCHERS['HANDLER']`` (a dotted path), else ``WATCHERS_HANDLER``."""
    value = setting("HANDLER")
    if value is not None and not isinstance(value, str):
        raise ImproperlyConfigured("WATCHERS['HANDLER'] must be a dotted path string")
    return value
