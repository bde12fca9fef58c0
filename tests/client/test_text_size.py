"""Texts go out as UTF-8 and are measured exactly (issue 9): a text just under
the frame limit in Cyrillic, CJK or emoji round-trips intact through the
emulator, one just over is refused before the wire.  The npm server check is in
test_interop_node.py."""

import pytest
from helpers import make_bot

from watchers_bot import protocol

CHARS = {"cyrillic": "ж", "cjk": "中", "emoji": "😀"}


def limit_text(char, room, api_key, bot_id):
    """The longest run of ``char`` whose send frame fits the limit."""
    base = protocol.frame_bytes(protocol.EVENT_SEND,
                                protocol.send_payload(room, api_key, bot_id, ""))
    text = char * ((protocol.MAX_FRAME_BYTES - base) // len(char.encode("utf-8")))
    payload = protocol.send_payload(room, api_key, bot_id, text)
    assert protocol.frame_bytes(protocol.EVENT_SEND, payload) <= protocol.MAX_FRAME_BYTES
    assert protocol.frame_bytes(protocol.EVENT_SEND, {**payload, "text": text + char}) \
        > protocol.MAX_FRAME_BYTES
    return text


@pytest.mark.parametrize("script", sorted(CHARS))
def test_text_just_under_the_limit_round_trips_and_just_over_is_refused(emulator, script):
    char = CHARS[script]
    bot = make_bot(emulator, include_own=True)
    with bot:
        bot.listen("room-1")
        text = limit_text(char, "room-1", "test-key", "bot-1")
        assert len(text.encode("utf-8")) > 990_000  # not a sixth of the limit
        bot.send("room-1", text)
        [sent] = emulator.wait_for_sent(1, timeout=10)
        assert sent.text == text  # intact, as the server read it
        assert bot.receive(timeout=10).text == text  # and back
        before = len(emulator.requests)
        with pytest.raises(ValueError, match="too large"):
            bot.send("room-1", text + char)
        assert len(emulator.requests) == before  # nothing went on the wire
        assert bot.connected


def test_python_socketio_own_packet_encoding_sends_utf8_too(emulator, caplog):
    # With the socketio logger at INFO, requests take python-socketio's own
    # packet encoding (the fast path steps aside so that its log lines appear).
    caplog.set_level("INFO", logger="watchers_bot.socketio")
    bot = make_bot(emulator)
    with bot:
        text = limit_text(CHARS["cjk"], "room-1", "test-key", "bot-1")
        bot.send("room-1", text)
        assert emulator.wait_for_sent(1, timeout=10)[0].text == text
        assert any("Emitting event" in r.getMessage() for r in caplog.records)
