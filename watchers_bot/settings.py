"""The ``WATCHERS_*`` settings: the one table of them, and the readers every entry point uses.

:meth:`Bot.from_env <watchers_bot.Bot.from_env>`, the ``watchers-bot`` command
line, the Flask and Django integrations and the pytest plugin all read their
configuration through this module, so a setting's name, variable, kind and
"not set" message have one home.

A value is looked up in *layers*, most specific first (a keyword argument or a
command-line option, then ``app.config`` or ``settings.WATCHERS``, then the
environment).  A layer that holds ``None``, ``""`` or only whitespace does
not count, and the next layer is asked; when no layer has a value the error
says which of "not set", "set but empty" and "set but only whitespace" it was,
so a ``WATCHERS_TOKEN=`` left in a ``.env`` file is told apart from a missing one.

Imports nothing beyond the standard library and :mod:`watchers_bot.errors`:
the CLI's ``--version`` and the pytest plugin stay cheap.
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = [
    "BOT_SETTINGS",
    "MAX_TIMEOUT",
    "REQUIRED",
    "SETTINGS",
    "Found",
    "Layer",
    "Setting",
    "bot_arguments",
    "check_id",
    "check_secret",
    "env_layer",
    "flag",
    "get",
    "is_insecure_remote",
    "lookup",
    "missing_message",
    "parse_rooms",
    "seconds",
    "secret_values",
]


@dataclass(frozen=True)
class Setting:
    """One ``WATCHERS_*`` setting."""

    #: The name in ``settings.WATCHERS`` (Django) and the suffix of the variable: ``TOKEN``.
    key: str
    #: What the value is, for messages: ``"token"``, ``"API key"``.
    what: str
    #: Why it is needed, for the CLI's "not set" message.
    why: str
    #: The :class:`~watchers_bot.Bot` argument it sets, if any.
    argument: Optional[str] = None
    #: ``secret`` (never shown), ``id``, ``region``, ``url``, ``rooms``, ``path``, ``flag``.
    kind: str = "id"
    #: Whether a bot cannot be made without it.
    required: bool = False
    #: The value when no layer has one.
    default: Any = None

    @property
    def env(self) -> str:
        """The environment variable: ``WATCHERS_TOKEN``."""
        return f"WATCHERS_{self.key}"

    @property
    def secret(self) -> bool:
        """Whether the value must never be printed, logged or put in an error."""
        return self.kind == "secret"

    @property
    def option(self) -> str:
        """The command-line option: ``--api-key``."""
        return "--" + (self.argument or self.key.lower()).replace("_", "-")


SETTINGS: Tuple[Setting, ...] = (
    Setting("TOKEN", "token", "the bot's bearer token", "token", "secret", required=True),
    Setting("API_KEY", "API key", "the project's API key", "api_key", "secret", required=True),
    Setting("BOT_ID", "bot id", "sending needs the bot's user id", "bot_id", "id"),
    Setting("REGION", "region", "eu (default), us, sa, hk or za", "region", "region",
            default="eu"),
    Setting("URL", "url", "an explicit endpoint, overrides the region", "url", "url"),
    Setting("ROOMS", "rooms", "the rooms the integrations listen to", kind="rooms"),
    Setting("HANDLER", "handler", "runbot's message handler (a dotted path)", kind="path"),
    Setting("RUN_HANDLERS", "run handlers", "whether Flask runs the handlers in the web "
            "process", kind="flag", default=True),
    Setting("FAST_PATH", "fast path", "0 turns the transport's fast path off", kind="flag",
            default=True),
)

_BY_KEY: Dict[str, Setting] = {s.key: s for s in SETTINGS}

#: The settings that are :class:`~watchers_bot.Bot` arguments, in the Bot's order.
BOT_SETTINGS: Tuple[Setting, ...] = tuple(s for s in SETTINGS if s.argument)
#: The settings a bot cannot be made without.
REQUIRED: Tuple[Setting, ...] = tuple(s for s in SETTINGS if s.required)


def get(key: str) -> Setting:
    """The setting named ``key`` (``"TOKEN"``, ``"token"`` or ``"WATCHERS_TOKEN"``)."""
    name = key.upper()
    if name.startswith("WATCHERS_"):
        name = name[len("WATCHERS_"):]
    try:
        return _BY_KEY[name]
    except KeyError:
        raise KeyError(f"no such setting: {key!r}") from None


# --------------------------------------------------------------------------- lookup

UNSET, EMPTY, BLANK = "not set", "set but empty", "set but empty (only whitespace)"


@dataclass(frozen=True)
class Layer:
    """A source of values: how it reads a setting (``None``: not there), and how it
    names the setting in messages (``WATCHERS_TOKEN``, ``--token``, ``WATCHERS['TOKEN']``)."""

    read: Callable[[Setting], Any]
    label: Callable[[Setting], str]


def env_layer(environ: Optional[Mapping[str, str]] = None) -> Layer:
    """The environment (``os.environ``, read at each lookup, by default)."""
    def read(setting: Setting) -> Any:
        return (os.environ if environ is None else environ).get(setting.env)

    return Layer(read, lambda s: s.env)


@dataclass(frozen=True)
class Found:
    """The outcome of :func:`lookup`."""

    setting: Setting
    #: The value (strings stripped), or the setting's default.
    value: Any
    #: The label of the layer the value came from (``"--token"``), ``None`` if none had one.
    source: Optional[str] = None
    #: Without a value: ``UNSET``, ``EMPTY`` or ``BLANK``, and where the blank was seen.
    state: str = UNSET
    blank_in: Optional[str] = None


def lookup(setting: Setting, layers: Sequence[Layer]) -> Found:
    """The first usable value of ``setting`` in ``layers`` (most specific first).

    Blank strings count as not there (the next layer is asked) but are
    remembered, so that the message can say "set but empty".
    """
    state, blank_in = UNSET, None
    for layer in layers:
        value = layer.read(setting)
        if value is None:
            continue
        if isinstance(value, str):
            if not value.strip():
                if blank_in is None or (value and state == EMPTY):  # whitespace says more
                    state, blank_in = (BLANK if value else EMPTY), layer.label(setting)
                continue
            value = value.strip()
        return Found(setting, value, layer.label(setting))
    return Found(setting, setting.default, None, state, blank_in)


def missing_message(found: Found, fix: str, *, name: Optional[str] = None) -> str:
    """``"WATCHERS_TOKEN is not set: <fix>"``, or "is set but empty", for a value not found.

    ``name`` is how the caller names the setting (default: its variable); a
    blank seen under another name is said too.
    """
    name = name or found.setting.env
    if found.state == UNSET:
        return f"{name} is not set: {fix}"
    if found.blank_in == name:
        return f"{name} is {found.state}: {fix}"
    return f"{name} is not set, and {found.blank_in} is {found.state}: {fix}"


def bot_arguments(
    layers: Sequence[Layer],
    fix: Callable[[Setting], str],
    *,
    need: Iterable[Setting] = REQUIRED,
    name: Optional[Callable[[Setting], str]] = None,
) -> Dict[str, Any]:
    """Keyword arguments for :class:`~watchers_bot.Bot` from ``layers``.

    Raises :class:`~watchers_bot.ConfigError` for the first setting of
    ``need`` that has no value: ``missing_message`` with ``fix(setting)``
    (and ``name(setting)`` as the setting's name, default its variable).
    Settings without a value are left out (the Bot's defaults apply).
    """
    found = {s: lookup(s, layers) for s in BOT_SETTINGS}
    for setting in need:
        if found[setting].source is None:
            raise ConfigError(missing_message(
                found[setting], fix(setting), name=name(setting) if name else None))
    return {s.argument: f.value for s, f in found.items()
            if f.source is not None and s.argument is not None}


def secret_values(layers: Sequence[Layer]) -> List[str]:
    """Every value a secret setting has in ``layers`` (all layers, not only the first)."""
    values = []
    for setting in SETTINGS:
        if setting.secret:
            for layer in layers:
                value = layer.read(setting)
                if isinstance(value, str) and value.strip():
                    values.append(value)
    return values


# --------------------------------------------------------------------------- readers


def flag(value: Any) -> bool:
    """A yes/no setting: ``0``, ``false``, ``no``, ``off`` and blank are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


def parse_rooms(value: Any, name: str) -> Tuple[str, ...]:
    """Room ids from a setting: a list/tuple of strings, or a comma-separated string.

    ``None`` and ``""`` give no rooms; blanks and duplicates are dropped.
    Raises :class:`~watchers_bot.ConfigError` naming ``name`` for anything else.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items: List[Any] = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(f"{name} must be a list of room ids or a comma-separated string, "
                          f"not {type(value).__name__}")
    rooms = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{name} must contain room ids as strings, not "
                              f"{type(item).__name__}")
        if item.strip():
            rooms.append(item.strip())
    return tuple(dict.fromkeys(rooms))


# --------------------------------------------------------------------------- validators

#: The longest timeout accepted (about 3 years): beyond it the platform's own
#: limits (threading.TIMEOUT_MAX, socket timeouts) overflow.
MAX_TIMEOUT = 1e8


def seconds(value: Any, name: str) -> float:
    """``value`` as a positive, finite number of seconds; TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result) or result <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    if result > MAX_TIMEOUT:
        raise ValueError(
            f"{name} must be at most {MAX_TIMEOUT:g} seconds, got {result:g} "
            "(where allowed, None waits without limit)"
        )
    return result


def check_secret(value: Any, name: str, *, allow_callable: bool = False) -> Any:
    """A token or API key: a non-blank str (or, with ``allow_callable``, a callable)."""
    if allow_callable and callable(value) and not isinstance(value, str):
        return value
    if not isinstance(value, str):
        kind = "a str or a callable returning one" if allow_callable else "a str"
        raise TypeError(f"{name} must be {kind}, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def check_id(value: Any, name: str) -> str:
    """An id (bot id, room id): a non-blank str."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def is_insecure_remote(url: str) -> bool:
    """Whether ``url`` is unencrypted (``ws``/``http``) to a host other than this machine."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("ws", "http"):
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
