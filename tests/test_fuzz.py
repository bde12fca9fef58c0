"""Property-based tests: whatever the server sends, whatever the user passes.

- Every ack shape and every ``message``/``exception`` payload the server could
  send (JSON-like values, nested): the readers in ``watchers_bot.protocol``
  raise only their documented errors, and the documented shapes parse exactly.
- A sample of generated payloads pushed through the emulator into a live bot:
  it never crashes or hangs, counts the malformed ones, and still delivers.
- Every argument a user could pass to ``Bot(...)``, ``send``, ``send_async``,
  ``listen``, ``receive``, ``messages`` and ``reply``: a rejected call raises
  ``TypeError``/``ValueError`` (``ConfigError`` is a ``ValueError``) and
  nothing reaches the server.

Hypothesis runs derandomized (the same examples every run) with no deadline.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from typing import Any

import pytest
from faultkit import KEY, TOKEN, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchers_bot import (
    AckTimeout,
    Bot,
    BotClosed,
    ConfigError,
    Message,
    ReceiveTimeout,
    ServerError,
    WatchersError,
    protocol,
)
from watchers_bot.emulator import Emulator

pytest_plugins = ["conftest_faults"]

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIVE = settings(FUZZ, max_examples=100)

# --------------------------------------------------------------------------- strategies

#: Keys the readers look at, mixed with arbitrary ones, so that generated
#: objects hit the interesting branches.
KEYS = st.one_of(
    st.sampled_from([
        "status", "error", "message", "statusCode", "code", "success", "reason", "roomId",
        "cause", "pattern", "data", "id", "text", "userId", "project", "apiKey", "bearer",
    ]),
    st.text(max_size=8),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2, 700),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["ok", "OK ", "success", "error", "fail", "failure", "400", "500", "",
                     "external/send", "external/listen"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=24,
)
ACK_ARGS = st.lists(JSON, max_size=3).map(tuple)

# Shapes close to a message payload, with each field possibly wrong.
MESSAGE_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "roomId": st.one_of(st.text(max_size=10), st.integers(), JSON),
        "message": st.one_of(
            st.fixed_dictionaries({}, optional={
                "id": st.one_of(st.integers(), st.text(max_size=10), JSON),
                "text": st.one_of(st.text(max_size=30), JSON),
            }),
            JSON,
        ),
        "userId": st.one_of(st.text(max_size=10), JSON),
        "project": JSON,
        "extra": JSON,
    },
)
PAYLOADS = st.one_of(JSON, MESSAGE_LIKE)

# Anything a user might pass by mistake (or on purpose).
ANYTHING = st.one_of(
    SCALARS,
    st.binary(max_size=10),
    st.lists(st.text(max_size=5), max_size=3),
    st.tuples(st.text(max_size=5)),
    st.frozensets(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from([
        math.nan, math.inf, -math.inf, 0, -1, 0.0, -0.0, 1e-300, 1e300, 2**64, True, False,
        "", " ", "\n\t", "\x00", "r", "wss://", "not a url", "http://", "ws://127.0.0.1:1",
        "ftp://x", "eu", "xx", "drop_oldest", "drop_newest", "x" * 1_000_001,
        object(), type, print, b"bytes", bytearray(b"x"), memoryview(b"x"), ...,
    ]),
    st.sampled_from([int, float, str, bytes, list, dict, tuple, set, complex, bool,
                     type(None), bytearray, range, slice]).flatmap(st.from_type),
    st.builds(object),
    st.builds(complex, st.floats(allow_nan=False), st.floats(allow_nan=False)),
)


def caught(fn: Any, *args: Any, errors: Any = Exception) -> Any:
    """``(result, None)``, or ``(None, error)`` when ``fn`` raised one of ``errors``."""
    try:
        return fn(*args), None
    except errors as exc:
        return None, exc


def roundtrip(value: Any) -> Any:
    """What the client would decode from the wire (tuples become lists)."""
    return json.loads(json.dumps(value))


# --------------------------------------------------------------------------- the readers


@FUZZ
@given(ACK_ARGS)
def test_send_ack_reader_raises_only_server_error(args):
    args = roundtrip(list(args))
    result, error = caught(protocol.read_send_ack, tuple(args), errors=ServerError)
    if error is not None:
        assert error.event == "external/send"
        assert str(error)
        assert repr(error)
    else:
        first = next((a for a in args if a is not None), None)
        assert result == first or result is first  # NaN is not equal to itself


@FUZZ
@given(ACK_ARGS)
def test_listen_ack_reader_raises_only_server_error(args):
    args = tuple(roundtrip(list(args)))
    _, error = caught(protocol.read_listen_ack, args, errors=ServerError)
    if error is not None:
        assert error.event == "external/listen"
        assert str(error)


@FUZZ
@given(JSON, st.sampled_from([protocol.read_send_ack, protocol.read_listen_ack]))
def test_ack_readers_mask_secrets(answer, reader):
    answer = {"status": "error", "apiKey": "sekret-key", "inner": [answer, {"bearer": "sekret"}]}
    with pytest.raises(ServerError) as info:
        reader((answer,))
    assert "sekret" not in str(info.value)
    assert "sekret" not in json.dumps(info.value.raw, default=repr)


@FUZZ
@given(st.integers(400, 599), st.text(min_size=1, max_size=40).filter(str.strip),
       st.sampled_from([protocol.read_send_ack, protocol.read_listen_ack]))
def test_documented_error_acks_parse_exactly(code, message, reader):
    with pytest.raises(ServerError) as info:
        reader(({"status": "error", "statusCode": code, "message": message},))
    assert (info.value.code, info.value.message) == (code, message)
    with pytest.raises(ServerError) as info:
        reader((message,))  # the vendor's callback(error) with a string
    assert info.value.message == message


@pytest.mark.parametrize("args", [(), (None,), (None, None), ({},), (True,),
                                  ({"status": "ok"},), ({"success": True, "id": 3},)])
def test_documented_send_successes(args):
    expected = next((a for a in args if a is not None), None)
    assert protocol.read_send_ack(args) == expected


@FUZZ
@given(st.text(min_size=1, max_size=20))
def test_documented_listen_success(room):
    answer = {"status": "ok", "roomId": room}
    assert protocol.read_listen_ack((answer,)) == answer
    assert protocol.read_listen_ack(()) is None


@FUZZ
@given(PAYLOADS)
def test_parse_message_raises_only_malformed_payload(payload):
    payload = roundtrip(payload)
    msg, error = caught(protocol.parse_message, payload, errors=protocol.MalformedPayload)
    if error is not None:
        assert isinstance(error, ValueError)
        assert str(error)
    else:
        assert isinstance(msg, Message)
        assert isinstance(msg.room_id, str)
        assert msg.room_id
        assert isinstance(msg.id, (int, str))
        assert not isinstance(msg.id, bool)
        assert isinstance(msg.text, str)
        assert msg.raw is payload
        str(msg), repr(msg)


@FUZZ
@given(st.one_of(st.text(min_size=1, max_size=20), st.integers()),
       st.one_of(st.integers(), st.text(max_size=20)), st.text(max_size=200),
       st.text(max_size=20), st.text(max_size=20), st.dictionaries(
           st.text(max_size=8).filter(lambda k: k not in {"project", "roomId", "message",
                                                          "userId"}), JSON, max_size=3))
def test_documented_message_parses_exactly(room, msg_id, text, user, project, extra):
    payload = roundtrip(protocol.message_payload(room, msg_id, text, user, project, **extra))
    if room == "":
        return
    msg = protocol.parse_message(payload)
    assert (msg.room_id, msg.id, msg.text, msg.user_id, msg.project) == (
        str(room), msg_id, text, user, project)
    assert msg.raw == payload


@FUZZ
@given(st.lists(st.one_of(JSON, MESSAGE_LIKE), max_size=3).map(tuple))
def test_parse_exception_never_raises(args):
    args = tuple(roundtrip(list(args)))
    error, pattern, data = protocol.parse_exception(args)
    assert isinstance(error, ServerError)
    assert pattern is None or isinstance(pattern, str)
    str(error), repr(error)
    if data is not None:
        protocol.exception_matches(data, {"roomId": "r", "apiKey": "k"})


@FUZZ
@given(st.text(min_size=1, max_size=40).filter(str.strip),
       st.sampled_from(["external/send", "external/listen"]), JSON)
def test_documented_exception_parses_exactly(message, pattern, data):
    body = {"status": "error", "message": message, "cause": {"pattern": pattern, "data": data}}
    error, got_pattern, got_data = protocol.parse_exception((roundtrip(body),))
    assert (error.message, error.event, got_pattern) == (message, pattern, pattern)
    assert got_data == roundtrip(data)


# --------------------------------------------------------------------------- a live bot


@pytest.fixture(scope="module")
def live():
    """One emulator and one connected bot for the live fuzz tests of this module."""
    emu = Emulator(tokens=[TOKEN], api_keys=[KEY], echo_sender=False).start()
    bot = Bot(TOKEN, KEY, "fuzz-bot", url=emu.url, connect_timeout=5, ack_timeout=5)
    try:
        bot.listen("fz")
        yield emu, bot
    finally:
        bot.close()
        emu.stop()


def expected_outcome(bot_id: str, args: tuple) -> str:
    """What the bot should do with a ``message`` event carrying ``args``."""
    if len(args) != 1:
        return "malformed"
    try:
        msg = protocol.parse_message(args[0])
    except protocol.MalformedPayload:
        return "malformed"
    return "own" if msg.user_id == bot_id else "delivered"


@LIVE
@given(st.lists(st.lists(PAYLOADS, max_size=2).map(tuple), min_size=1, max_size=12),
       st.lists(st.lists(JSON, max_size=2).map(tuple), max_size=3))
def test_live_bot_survives_whatever_the_server_pushes(live, events, exceptions):
    emu, bot = live
    before = bot.stats
    expected = []
    for args in events:
        args = tuple(roundtrip(list(args)))
        emu.push_raw("message", *args, room="fz")
        outcome = expected_outcome("fuzz-bot", args)
        if outcome == "delivered":
            expected.append(protocol.parse_message(args[0]))
    for args in exceptions:
        emu.push_raw("exception", *roundtrip(list(args)), room="fz")
    good = emu.post("fz", "good one after the noise")
    got = []
    deadline = time.monotonic() + 10
    while True:
        msg = bot.receive(timeout=max(deadline - time.monotonic(), 0.01))
        if msg.raw == good:
            break
        got.append(msg)
    assert [(m.room_id, m.id, m.text) for m in got] == [
        (m.room_id, m.id, m.text) for m in expected]
    after = bot.stats
    malformed = sum(expected_outcome("fuzz-bot", tuple(roundtrip(list(a)))) == "malformed"
                    for a in events)
    assert after.malformed - before.malformed == malformed
    assert after.received - before.received == len(events) + 1
    assert bot.connected
    assert bot.stats.queued == 0


def test_live_bot_still_sends_after_the_noise(live):
    _, bot = live
    assert bot.send("fz", "still here") is None
    assert bot.connected


# --------------------------------------------------------------------------- user arguments


REJECTED = (TypeError, ValueError)  # ConfigError is a ValueError


class Ledger:
    """Counts the requests the server should have seen from the live bot.

    A request goes out asynchronously (an accepted send with a tiny timeout
    raises AckTimeout before the server records it), so each example first
    waits until every request of the examples before it has landed; after that,
    any extra request can only come from the call under test.
    """

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.expected = len(emu.requests)

    def begin(self) -> int:
        if self.expected:
            self.emu.wait_for_requests(self.expected, timeout=10)
        got = self.emu.requests
        assert len(got) == self.expected, f"unexpected requests: {got[self.expected:]}"
        return self.expected

    def accepted(self, count: int) -> None:
        self.expected += count

    def check_rejected(self, before: int) -> None:
        got = self.emu.requests
        assert len(got) == before, f"a rejected call reached the server: {got[before:]}"


@pytest.fixture(scope="module")
def ledger(live):
    emu, _ = live
    book = Ledger(emu)
    yield book
    # Nothing more may arrive: a rejected call that leaked would show up here.
    book.begin()
    with pytest.raises(TimeoutError):
        emu.wait_for_requests(book.expected + 1, timeout=0.5)


@FUZZ
@given(st.fixed_dictionaries({}, optional={
    name: ANYTHING for name in (
        "token", "api_key", "bot_id", "region", "url", "connect_timeout", "ack_timeout",
        "reconnect", "reconnect_delay", "reconnect_delay_max", "reconnect_attempts",
        "max_queue", "overflow", "include_own", "verify_ssl", "ca_certs", "allow_insecure",
        "on_state_change",
    )}))
def test_bot_constructor_rejects_bad_arguments_before_any_network(kwargs):
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("api_key", KEY)
    try:
        bot = Bot(**kwargs)
    except REJECTED:
        return
    try:
        assert bot.state == "idle"  # constructing never touches the network
        repr(bot)
    finally:
        bot.close()


@FUZZ
@given(st.sampled_from(["send", "send_async", "reply"]), ANYTHING, ANYTHING,
       st.one_of(st.none(), ANYTHING), st.booleans())
def test_send_arguments(live, ledger, method, room, text, timeout, wrap):
    _, bot = live
    before = ledger.begin()
    if method == "reply" and wrap:  # a Message whose room id is whatever was drawn
        room = Message(room_id=room, id=1, text="t", user_id=None, project=None, raw={})
    call = getattr(bot, method)
    result, error = caught(lambda: call(room, text, timeout=timeout),
                           errors=(*REJECTED, AckTimeout, ServerError))
    if isinstance(error, REJECTED):
        assert not isinstance(error, WatchersError) or isinstance(error, ConfigError)
        ledger.check_rejected(before)
        assert bot.connected
        return
    # accepted: it went on the wire (answered, or answered badly or late)
    ledger.accepted(1)
    if method == "send_async" and error is None:
        with contextlib.suppress(AckTimeout, ServerError):
            result.result(10)


@FUZZ
@given(st.lists(ANYTHING, max_size=3), st.one_of(st.none(), ANYTHING))
def test_listen_arguments(live, ledger, rooms, timeout):
    _, bot = live
    before = ledger.begin()
    try:
        bot.listen(*rooms, timeout=timeout)
    except REJECTED:
        ledger.check_rejected(before)
        return
    except (AckTimeout, ServerError):
        pass
    ledger.accepted(len(rooms))


@FUZZ
@given(ANYTHING)
def test_receive_and_messages_arguments(live, ledger, timeout):
    emu, bot = live
    # One message waits, so an accepted timeout (even None) returns at once.
    emu.post("fz", "waiting")
    wait_until(lambda: bot.stats.queued >= 1, 5, "a queued message")
    before = ledger.begin()
    with contextlib.suppress(REJECTED):
        bot.messages(timeout=timeout)
    try:
        msg = bot.receive(timeout=timeout)
    except REJECTED:
        pass
    except ReceiveTimeout:  # a tiny timeout may beat even a queued message: fine
        pass
    else:
        assert msg.text == "waiting"
    ledger.check_rejected(before)
    for _ in bot.messages(timeout=0.01):  # leave the inbox empty for the next example
        pass


def test_bot_without_bot_id_cannot_send(emulator):
    bot = Bot(TOKEN, KEY, url=emulator.url)
    try:
        with pytest.raises(ConfigError, match="bot_id"):
            bot.send("r", "x")
        assert emulator.connections == 0
    finally:
        bot.close()
    with pytest.raises(BotClosed):
        bot.send("r", "x")




@pytest.mark.parametrize(("call", "huge"), [
    ("send", 1e10), ("listen", 2**64), ("receive", 1e300), ("connect", 1e10),
    ("ack_timeout", 1e10), ("connect_timeout", 10**400),
], ids=["send", "listen", "receive", "connect", "ack_timeout", "connect_timeout-int"])
def test_huge_timeouts(emulator, call, huge):
    """A huge timeout should be refused (ValueError) or work like 'no limit'."""
    kwargs = {call: huge} if call.endswith("_timeout") else {}
    try:
        bot = Bot(TOKEN, KEY, "b", url=emulator.url, **kwargs)
    except ValueError:
        return  # refused before the wire: fine
    outcome: dict = {}

    def run() -> None:
        try:
            if call == "send":
                outcome["result"] = bot.send("r", "x", timeout=huge)
            elif call == "listen":
                outcome["result"] = bot.listen("r", timeout=huge)
            elif call == "receive":
                bot.listen("r")
                emulator.post("r", "m")
                outcome["result"] = bot.receive(timeout=huge).text
            elif call == "connect":
                outcome["result"] = bot.connect(timeout=huge).state
            else:
                bot.listen("r")
                outcome["result"] = bot.send("r", "x")
        except ValueError:
            outcome["result"] = "refused"
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(3)
    bot.close()
    worker.join(5)
    assert "error" not in outcome, repr(outcome.get("error"))
    assert "result" in outcome, f"{call} with a {huge:.3g}s timeout did not return in 3 s"
