"""Small helpers shared by the behaviour tests."""

import threading
import time

from watchers_bot import Bot

TOKEN = "test-token"
KEY = "test-key"


def make_bot(emulator, **kwargs):
    """A bot for the ``emulator`` fixture with short timeouts and a fast reconnect."""
    options = {"connect_timeout": 5.0, "ack_timeout": 5.0, "reconnect_delay": 0.05,
               "reconnect_delay_max": 0.5}
    options.update(kwargs)
    return Bot(TOKEN, KEY, options.pop("bot_id", "bot-1"), url=emulator.url, **options)


def wait_until(predicate, timeout=5.0, what="condition"):
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


#: Name parts of the bot's threads and of python-socketio's client threads.
CLIENT_THREAD_MARKERS = ("watchers-bot", "_read_loop", "_write_loop", "_handle_eio",
                         "_handle_reconnect", "_supervise")


def client_threads():
    """Threads of bots and of python-socketio's client (the emulator's are left out)."""
    return {t for t in threading.enumerate() if any(m in t.name for m in CLIENT_THREAD_MARKERS)}


def tls_context(ca, *hosts):
    """A server-side TLS context with a certificate from ``ca`` for ``hosts``."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context
