"""pytest fixtures for testing a Watchers bot offline, against the local emulator.

Installing ``watchers-bot`` registers this module as a pytest plugin (the
``pytest11`` entry point), so a project's tests can use these fixtures with no
``conftest.py``:

``watchers_emulator``
    A running :class:`~watchers_bot.emulator.Emulator` (one per test) that
    accepts the credentials of ``watchers_credentials``.  Post as a human with
    ``watchers_emulator.post(room, text)``, read what bots sent with
    ``wait_for_sent(n)``, inject faults with ``drop()``, ``kick()``,
    ``set_ack()``...  Options of the emulator go in a marker:
    ``@pytest.mark.watchers_emulator(echo_sender=False)``.
``watchers_credentials``
    A :class:`Credentials` value: ``token``, ``api_key``, ``bot_id``, ``url``
    and ``env`` (the ``WATCHERS_*`` variables as a dict).
``watchers_env``
    Sets the ``WATCHERS_*`` variables for the test, so that code calling
    :meth:`Bot.from_env() <watchers_bot.Bot.from_env>` (or a subprocess) talks
    to the emulator; returns the variables.
``make_watchers_bot``
    A factory: ``make_watchers_bot(**kwargs)`` returns a new, not yet connected
    :class:`~watchers_bot.Bot` for the emulator, with fast reconnection
    settings; ``kwargs`` override any :class:`~watchers_bot.Bot` argument.
    Every bot it made is closed after the test.
``watchers_bot``
    A :class:`~watchers_bot.Bot` connected to the emulator, closed after the test.

Every fixture puts the loopback in ``NO_PROXY`` for the duration of the test,
so an ``HTTP(S)_PROXY`` of the environment does not capture the connections.

The emulator needs the ``emulator`` extra (``pip install 'watchers-bot[emulator]'``);
without it the fixtures fail with that command.  Importing this module is
cheap and imports none of the emulator's dependencies: pytest loads it in
every session.  Disable it with ``pytest -p no:watchers_bot``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Type

import pytest

from . import settings

if TYPE_CHECKING:
    from .client.bot import Bot
    from .emulator import Emulator

__all__ = ["API_KEY", "BOT_ID", "TOKEN", "Credentials"]

#: The credentials the ``watchers_emulator`` fixture accepts.
TOKEN = "watchers-test-token"
API_KEY = "watchers-test-key"
BOT_ID = "watchers-test-bot"

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_INSTALL_HINT = "pip install 'watchers-bot[emulator]'"

#: Defaults of ``make_watchers_bot``: tests should not wait for the backoff.
_BOT_DEFAULTS: Dict[str, Any] = {
    "connect_timeout": 5.0,
    "ack_timeout": 5.0,
    "reconnect_delay": 0.05,
    "reconnect_delay_max": 0.5,
}


class Credentials:
    """The credentials and URL of the ``watchers_emulator`` fixture."""

    __slots__ = ("api_key", "bot_id", "token", "url")

    def __init__(self, token: str, api_key: str, bot_id: str, url: str) -> None:
        self.token = token
        self.api_key = api_key
        self.bot_id = bot_id
        self.url = url

    @property
    def env(self) -> Dict[str, str]:
        """The ``WATCHERS_*`` variables that :meth:`Bot.from_env` reads."""
        values = {"TOKEN": self.token, "API_KEY": self.api_key, "BOT_ID": self.bot_id,
                  "URL": self.url}
        return {settings.get(key).env: value for key, value in values.items()}

    def __repr__(self) -> str:  # test credentials, but keep the habit: no secrets
        return f"<Credentials url={self.url!r} bot_id={self.bot_id!r}>"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "watchers_emulator(**options): options of the watchers_emulator fixture's "
        "Emulator (echo_sender=, ping_interval=, project=...)",
    )


def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        current = [h.strip() for h in os.environ.get(name, "").split(",") if h.strip()]
        if "*" in current:
            continue
        missing = [h for h in _LOOPBACK if h not in current]
        if missing:
            monkeypatch.setenv(name, ",".join(current + missing))


def _emulator_class() -> "Type[Emulator]":
    try:
        from .emulator import Emulator
    except ImportError as exc:
        error = exc
    else:
        return Emulator
    # Failed outside the except block: one line, no chained tracebacks.
    cause = error.__cause__ if isinstance(error.__cause__, ImportError) else error
    pytest.fail(
        f"the watchers_emulator fixture needs the emulator extra (missing: "
        f"{cause.name or cause}); install it with: {_INSTALL_HINT}",
        pytrace=False,
    )


@pytest.fixture
def watchers_emulator(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator["Emulator"]:
    """A running emulator accepting ``watchers_credentials``; stopped after the test."""
    _no_proxy_for_loopback(monkeypatch)
    emulator_class = _emulator_class()
    options: Dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("watchers_emulator"))):
        if marker.args:
            raise TypeError("@pytest.mark.watchers_emulator takes keyword arguments only")
        options.update(marker.kwargs)
    options.setdefault("tokens", [TOKEN])
    options.setdefault("api_keys", [API_KEY])
    emu = emulator_class(**options).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def watchers_credentials(watchers_emulator: "Emulator") -> Credentials:
    """Token, API key, bot id and URL for a bot of ``watchers_emulator``."""
    return Credentials(TOKEN, API_KEY, BOT_ID, watchers_emulator.url)


@pytest.fixture
def watchers_env(
    watchers_credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> Dict[str, str]:
    """Set the ``WATCHERS_*`` variables to the emulator for this test; returns them."""
    env = watchers_credentials.env
    for setting in settings.BOT_SETTINGS:  # e.g. a stray WATCHERS_REGION: the bot reads only these
        if setting.env not in env:
            monkeypatch.delenv(setting.env, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def make_watchers_bot(
    watchers_credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., "Bot"]]:
    """A factory of bots for ``watchers_emulator``; every bot it made is closed after the test."""
    from .client.bot import Bot

    _no_proxy_for_loopback(monkeypatch)
    made: List[Bot] = []

    def make(**kwargs: Any) -> Bot:
        options = dict(_BOT_DEFAULTS)
        options.update(kwargs)
        token = options.pop("token", watchers_credentials.token)
        api_key = options.pop("api_key", watchers_credentials.api_key)
        bot_id: Optional[str] = options.pop("bot_id", watchers_credentials.bot_id)
        options.setdefault("url", watchers_credentials.url)
        bot = Bot(token, api_key, bot_id, **options)
        made.append(bot)
        return bot

    try:
        yield make
    finally:
        for bot in reversed(made):
            bot.close()


@pytest.fixture
def watchers_bot(make_watchers_bot: Callable[..., "Bot"]) -> "Bot":
    """A bot connected to ``watchers_emulator`` (bot id ``BOT_ID``); closed after the test."""
    return make_watchers_bot().connect()
