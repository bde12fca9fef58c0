"""A refused CONNECT is terminal only when it refuses the credentials."""

import pytest
from helpers import TOKEN, make_bot, wait_until

from watchers_bot import AuthError
from watchers_bot.client.link import is_auth_refusal


@pytest.mark.parametrize("payload", [
    ["Unauthorized: invalid bearer token"],  # the emulator's words
    [{"message": "Unauthorized"}],  # NestJS
    [{"status": 401, "message": "nope"}],
    [{"statusCode": 403}],
    [{"message": {"message": "jwt expired"}}],
])
def test_credential_refusals_are_terminal(payload):
    assert is_auth_refusal(payload)


@pytest.mark.parametrize("payload", [
    ["Server is shutting down"], [{"message": "Too many connections"}], [], [None],
    [{"status": 503}],
])
def test_other_refusals_are_retried(payload):
    assert not is_auth_refusal(payload)


def test_a_bot_reconnects_through_restarts_that_refuse_it_meanwhile(emulator):
    """Restarts while the bot reconnects ("Server is shutting down" refusals included)
    never make it give up; only a refused token does."""
    states = []
    with make_bot(emulator, reconnect_delay=0.01, reconnect_delay_max=0.05,
                  on_state_change=lambda old, new: states.append(new)) as bot:
        bot.listen("r")
        for _ in range(5):
            emulator.restart()
            wait_until(lambda: bot.connected, 10, "the bot to reconnect")
        assert "failed" not in states
        bot.send("r", "still here")
        assert bot.rooms == ("r",)
        emulator.revoke_token(TOKEN)  # now a real refusal: terminal
        wait_until(lambda: bot.state == "failed", 10, "the bot to give up")
        assert isinstance(bot._conn.fatal, AuthError)
