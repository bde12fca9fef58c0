"""The seam into python-engineio: fails loudly if a new release moves it."""

import threading

import engineio
import socketio

from watchers_bot._transport import SocketIOClient, seam_available


def test_seam_is_present_in_installed_versions():
    assert seam_available(), (
        f"python-socketio {socketio.__version__ if hasattr(socketio, '__version__') else '?'} / "
        "python-engineio moved the dispatch seam watchers_bot hooks: see _transport.py"
    )
    client = SocketIOClient(handle_sigint=False)
    assert isinstance(client.eio, engineio.Client)
    assert type(client.eio).__name__ == "_InlineEngineIOClient"


def test_packets_are_dispatched_on_the_read_thread_in_order(emulator):
    """Events and acks run on the Engine.IO read thread, not a thread per packet."""
    client = SocketIOClient(handle_sigint=False, reconnection=False)
    seen = []
    done = threading.Event()

    def on_message(payload):
        seen.append((payload["message"]["text"], threading.current_thread()))
        if len(seen) == 500:
            done.set()

    client.on("message", on_message)
    client.connect(emulator.url, auth={"bearer": "test-token"}, transports=["websocket"],
                   wait_timeout=5)
    try:
        ack = client.call("external/listen", {"roomId": "r", "apiKey": "test-key"}, timeout=5)
        assert ack["status"] == "ok"
        emulator.post_many("r", [str(i) for i in range(500)])
        assert done.wait(10)
        assert [text for text, _ in seen] == [str(i) for i in range(500)]
        read_thread = client.eio.read_loop_task
        assert {thread for _, thread in seen} == {read_thread}
        assert client.eio.inline_dispatches >= 501
    finally:
        client.disconnect()


def test_bad_packet_from_server_does_not_kill_the_read_thread(emulator):
    client = SocketIOClient(handle_sigint=False, reconnection=False)
    got = threading.Event()
    client.on("message", lambda payload: got.set())
    client.connect(emulator.url, auth={"bearer": "test-token"}, transports=["websocket"],
                   wait_timeout=5)
    try:
        client.call("external/listen", {"roomId": "r", "apiKey": "test-key"}, timeout=5)
        sid = emulator.clients[0]
        emulator.push_packet('2["message", {broken json', to=sid)  # undecodable Socket.IO packet
        emulator.post("r", "still alive")
        assert got.wait(5)
        assert client.eio.read_loop_task.is_alive()
    finally:
        client.disconnect()


def test_malformed_disconnect_packet_does_not_raise_in_a_thread(emulator):
    """Packets that keep upstream's thread are guarded too (pytest fails on thread errors)."""
    client = SocketIOClient(handle_sigint=False, reconnection=False)
    got = threading.Event()
    client.on("message", lambda payload: got.set())
    client.connect(emulator.url, auth={"bearer": "test-token"}, transports=["websocket"],
                   wait_timeout=5)
    try:
        client.call("external/listen", {"roomId": "r", "apiKey": "test-key"}, timeout=5)
        sid = emulator.clients[0]
        emulator.push_packet("5-broken binary header", to=sid)
        emulator.push_packet("9 unknown packet type", to=sid)
        emulator.post("r", "still alive")
        assert got.wait(5)
    finally:
        client.disconnect()
