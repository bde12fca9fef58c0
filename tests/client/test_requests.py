"""The one request table: every end of a request settles it once, and leaves nothing
behind in python-socketio's own callback table."""

import pytest
from helpers import make_bot, wait_until

from watchers_bot import AckTimeout, ServerError


def _upstream_callbacks(bot):
    link = bot._conn.link
    assert link is not None
    assert link.alive
    return link.acks_waiting()


@pytest.mark.parametrize("how", ["caller", "supervisor"])
def test_expired_sends_leave_no_callback_in_python_socketio(emulator, how):
    """A bot whose sends time out again and again does not grow python-socketio's table."""
    emulator.set_ack("external/send", "withhold")
    with make_bot(emulator) as bot:
        bot.connect()
        if how == "caller":  # the caller's wait runs out
            for i in range(20):
                with pytest.raises(AckTimeout):
                    bot.send("r", f"lost {i}", timeout=0.05)
        else:  # the supervisor's sweep expires futures nobody waits on
            futures = [bot.send_async("r", f"lost {i}", timeout=0.05) for i in range(50)]
            for future in futures:
                with pytest.raises(AckTimeout):
                    future.result(5)
        assert _upstream_callbacks(bot) == 0
        assert bot.stats.pending == 0
        assert bot.stats.send_failures == (20 if how == "caller" else 50)
        emulator.set_ack("external/send", "normal")
        bot.send("r", "answered")  # the link still works
        assert _upstream_callbacks(bot) == 0


def test_a_request_failed_by_an_exception_event_leaves_no_callback(emulator):
    emulator.set_ack("external/send", "exception", error="Bad payload")
    with make_bot(emulator) as bot:
        for i in range(5):
            with pytest.raises(ServerError, match="Bad payload"):
                bot.send("r", f"refused {i}")
        assert _upstream_callbacks(bot) == 0
        assert bot.stats.pending == 0


def test_acked_requests_leave_no_callback(emulator):
    with make_bot(emulator) as bot:
        futures = [bot.send_async("r", f"m{i}") for i in range(200)]
        for future in futures:
            future.result(5)
        wait_until(lambda: _upstream_callbacks(bot) == 0, what="callbacks to go")
        assert bot.stats.sent == 200
