"""An explicit per-call timeout is the deadline of the whole call, the wait for
a (re)connection included; send_async() never blocks (issue 9)."""

import socket
import threading
import time

import pytest
from helpers import KEY, TOKEN, wait_until

from watchers_bot import Bot, ConnectFailed
from watchers_bot.emulator import Emulator
from watchers_bot.protocol import EVENT_SEND as SEND

# Long defaults, so a call that waited for them instead of its own timeout shows.
SLOW = {"connect_timeout": 30.0, "ack_timeout": 30.0, "reconnect_delay": 0.05,
        "reconnect_delay_max": 0.3}
# A bound on "about its timeout": the timeout plus scheduling slack on a busy machine.
SLACK = 1.5


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nothing_listening():
    bot = Bot(TOKEN, KEY, "bot-1", url=f"http://127.0.0.1:{_free_port()}", **SLOW)
    yield bot
    bot.close()


@pytest.fixture
def stopped_server():
    """A bot that was connected and listening when its server stopped."""
    emu = Emulator(tokens=[TOKEN], api_keys=[KEY], ping_interval=1, ping_timeout=1).start()
    bot = Bot(TOKEN, KEY, "bot-1", url=emu.url, **SLOW)
    bot.listen("r")
    emu.stop()
    wait_until(lambda: bot.state == "reconnecting", 10, "the bot to see the server go")
    yield bot
    bot.close()


def _timed(call):
    start = time.monotonic()
    with pytest.raises(ConnectFailed) as info:
        call()
    return time.monotonic() - start, str(info.value)


@pytest.mark.parametrize("server", ["nothing_listening", "stopped_server"])
@pytest.mark.parametrize("call", ["connect", "send", "listen"])
def test_a_per_call_timeout_bounds_the_wait_for_a_link(request, server, call):
    bot = request.getfixturevalue(server)
    do = {"connect": lambda: bot.connect(timeout=2),
          "send": lambda: bot.send("r", "hello", timeout=2),
          "listen": lambda: bot.listen("r2", timeout=2)}[call]
    took, text = _timed(do)
    assert took < 2 + SLACK, f"{call}(timeout=2) took {took:.1f}s"
    # The error names the wait that ran out with the number used, not connect_timeout.
    assert "2s" in text
    assert "30s" not in text
    if call != "connect":
        assert "nothing was sent" in text
    # ... and the reason the link is not there.
    assert "refused" in text.lower()




def test_without_a_per_call_timeout_connect_timeout_bounds_the_link_wait():
    bot = Bot(TOKEN, KEY, "bot-1", url=f"http://127.0.0.1:{_free_port()}",
              connect_timeout=1.0, ack_timeout=30.0)
    with bot:
        took, text = _timed(lambda: bot.send("r", "hello"))
    assert took < 1 + SLACK
    assert "1s" in text
    assert "nothing was sent" in text


@pytest.mark.parametrize("server", ["nothing_listening", "stopped_server"])
def test_send_async_returns_at_once_and_its_future_fails_in_its_timeout(request, server):
    bot = request.getfixturevalue(server)
    start = time.monotonic()
    futures = [bot.send_async("r", f"m{i}", timeout=2) for i in range(20)]
    returned = time.monotonic() - start
    assert returned < 0.5, f"20 send_async() calls took {returned:.2f}s"
    for future in futures:
        with pytest.raises(ConnectFailed, match="nothing was sent"):
            future.result(2 + SLACK)
    assert time.monotonic() - start < 2 + SLACK
    assert bot.stats.send_failures == 20
    assert bot.stats.pending == 0


def test_send_async_made_without_a_link_goes_out_when_the_link_comes(emulator):
    bot = Bot(TOKEN, KEY, "bot-1", url=emulator.url, **SLOW)
    with bot:
        futures = [bot.send_async("r", f"m{i}") for i in range(5)]  # idle: nobody connected
        for future in futures:
            future.result(10)
        got = [r.payload["text"] for r in emulator.requests if r.event == SEND]
        assert got == [f"m{i}" for i in range(5)]  # all, once each, in order
        assert bot.stats.sent == 5


def test_send_async_waiting_during_a_restart_is_sent_after_it(emulator):
    bot = Bot(TOKEN, KEY, "bot-1", url=emulator.url, **SLOW)
    with bot:
        bot.listen("r")
        restart = threading.Thread(target=emulator.restart, kwargs={"down_for": 2.0})
        restart.start()
        wait_until(lambda: bot.state == "reconnecting", 10, "the bot to see the server go")
        future = bot.send_async("r", "after the restart", timeout=20)
        restart.join(15)
        future.result(20)
        assert [r.payload["text"] for r in emulator.requests
                if r.event == SEND] == ["after the restart"]


def test_send_async_without_a_timeout_waits_connect_timeout_for_a_link():
    bot = Bot(TOKEN, KEY, "bot-1", url=f"http://127.0.0.1:{_free_port()}",
              connect_timeout=1.0, ack_timeout=30.0, reconnect_delay=0.05)
    with bot:
        start = time.monotonic()
        future = bot.send_async("r", "hello")
        with pytest.raises(ConnectFailed, match=r" 1s.*nothing was sent"):
            future.result(1 + SLACK)
        assert time.monotonic() - start < 1 + SLACK


def test_send_async_with_a_long_timeout_keeps_waiting_past_connect_timeout(emulator):
    url = emulator.url
    emulator.stop()
    bot = Bot(TOKEN, KEY, "bot-1", url=url, connect_timeout=0.5, ack_timeout=5.0,
              reconnect_delay=0.05, reconnect_delay_max=0.2)
    with bot:
        future = bot.send_async("r", "late but sent", timeout=15)
        time.sleep(1.0)  # past connect_timeout, with the server still down
        assert not future.done()
        emulator.start()
        future.result(15)
        assert [r.payload["text"] for r in emulator.requests
                if r.event == SEND] == ["late but sent"]
