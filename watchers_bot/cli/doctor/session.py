"""The doctor's checks over a real bot: Socket.IO connect and token, listening, sending."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, Tuple

from ...errors import AckTimeout, AuthError, BotClosed, ConnectFailed, ConnectionLost, ServerError
from .checks import CheckFailed, ms

if TYPE_CHECKING:
    from ...client.bot import Bot

__all__ = ["connect", "listen", "send"]


def connect(url: str, token: str, api_key: str, bot_id: Any, *, timeout: float,
            options: Dict[str, Any]) -> Tuple[str, "Bot"]:
    """A bot connected to ``url`` (no reconnection: a failure is the answer)."""
    from ...client.bot import Bot

    bot = Bot(token, api_key, bot_id, url=url, ack_timeout=timeout, reconnect=False, **options)
    started = time.monotonic()
    try:
        try:
            bot.connect()
        except AuthError as exc:
            raise CheckFailed(f"token refused: {exc.reason}") from None
        except ConnectFailed as exc:
            raise CheckFailed(
                f"no Socket.IO connection: {exc} (the checks above passed: is {url} a "
                "Watchers bot endpoint?)"
            ) from None
    except BaseException:
        bot.close()
        raise
    return f"connected in {ms(started)}, token accepted", bot


def listen(bot: "Bot", room: str, timeout: float) -> Tuple[str, bool]:
    """Listen to ``room`` and wait for the acknowledgement (which checks the API key)."""
    started = time.monotonic()
    try:
        bot.listen(room, timeout=timeout)
    except ServerError as exc:
        raise CheckFailed(f"the server refused to listen to {room!r}: {exc} "
                          "(check the API key and the room id)") from None
    except AckTimeout:
        raise CheckFailed(f"no acknowledgement for {room!r} in {timeout:g}s") from None
    except (ConnectionLost, ConnectFailed, BotClosed) as exc:
        raise CheckFailed(f"the link dropped while listening: {exc}") from None
    return f"{room} acknowledged in {ms(started)} (API key accepted)", True


def send(bot: "Bot", room: str, text: str, timeout: float) -> Tuple[str, bool]:
    """Post ``text`` in ``room`` (really) and wait for the acknowledgement."""
    started = time.monotonic()
    try:
        bot.send(room, text, timeout=timeout)
    except ServerError as exc:
        raise CheckFailed(f"the server refused the message: {exc}") from None
    except (AckTimeout, ConnectionLost) as exc:
        raise CheckFailed(f"{exc}") from None
    except (ConnectFailed, BotClosed) as exc:
        raise CheckFailed(f"not sent: {exc}") from None
    return f"posted {len(text)} character(s) in {room}, acknowledged in {ms(started)}", True
