"""A user's plain script, run by tests/examples/test_logging_defaults.py in a subprocess.

    python logging_user.py SETUP SCENARIO

SETUP is how the script sets up logging before it imports watchers_bot:
``none`` (nothing at all), ``app`` (basicConfig with a format of the app's
own), ``warning`` / ``info`` (basicConfig at that level), ``silenced`` (the
documented one-liner that turns the library's output off).

SCENARIO is what goes wrong:
``user-code``: a run_in_thread handler, a send future's done-callback and a
state listener each raise; ``drops``: the inbox overflows and the bot is
closed with unread messages; ``flask``: a Flask ``on_message`` handler
raises; ``reconnect``: the emulator cuts the link and
the bot reconnects, then closes.

It prints ``END`` on stdout when it got to the end.
"""

import logging
import sys
import time

SETUP, SCENARIO = sys.argv[1], sys.argv[2]
if SETUP == "app":
    logging.basicConfig(format="APP %(levelname)s %(name)s: %(message)s")
elif SETUP == "warning":
    logging.basicConfig(level=logging.WARNING)
elif SETUP == "info":
    logging.basicConfig(level=logging.INFO)
elif SETUP == "silenced":
    logging.getLogger("watchers_bot").addHandler(logging.NullHandler())
elif SETUP != "none":
    raise SystemExit(f"unknown SETUP {SETUP!r}")

from watchers_bot import Bot  # noqa: E402
from watchers_bot.emulator import Emulator  # noqa: E402

DEADLINE = 15.0


def wait_until(predicate, what):
    end = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def user_code(emu):
    bot = Bot("test-token", "test-key", "bot-1", url=emu.url, connect_timeout=5,
              ack_timeout=5)
    with bot:
        def listener(old, new):
            raise RuntimeError(f"boom-in-listener {old}->{new}")

        bot.on_state_change(listener)
        bot.listen("room-1")

        def handler(msg):
            raise RuntimeError(f"boom-in-handler {msg.text}")

        handle = bot.run_in_thread(handler)
        emu.post("room-1", "hello")
        wait_until(lambda: handle.errors == 1, "the handler to raise")
        handle.stop()  # joins: the handler's error is logged by now

        def callback(future):
            raise RuntimeError("boom-in-callback")

        bot.send_async("room-1", "hi").add_done_callback(callback)
    # close() has waited for the callback thread: the callback's error is logged.


def drops(emu):
    bot = Bot("test-token", "test-key", "bot-1", url=emu.url, connect_timeout=5,
              ack_timeout=5, max_queue=1)
    with bot:
        bot.listen("room-1")
        emu.post("room-1", "one")
        emu.post("room-1", "two")
        wait_until(lambda: bot.stats.dropped == 1, "a message to be dropped")


def flask_app(emu):
    from flask import Flask

    from watchers_bot.contrib.flask import WatchersBot

    watchers = WatchersBot()

    @watchers.on_message
    def shout(msg):
        raise RuntimeError(f"boom-in-flask-handler {msg.text}")

    app = Flask("logging_user")
    app.config.update(WATCHERS_TOKEN="test-token", WATCHERS_API_KEY="test-key",
                      WATCHERS_BOT_ID="bot-1", WATCHERS_URL=emu.url,
                      WATCHERS_ROOMS=["room-1"])
    watchers.init_app(app)
    with app.app_context():
        watchers.start(force=True)
        emu.wait_for_listeners("room-1", timeout=DEADLINE)
        emu.post("room-1", "hello")
        wait_until(lambda: watchers.handler_thread is not None
                   and watchers.handler_thread.errors == 1, "the Flask handler to raise")
        watchers.close()  # joins the handler thread: its error is logged by now


def reconnect(emu):
    bot = Bot("test-token", "test-key", "bot-1", url=emu.url, connect_timeout=5,
              ack_timeout=5, reconnect_delay=0.05, reconnect_delay_max=0.5)
    with bot:
        bot.listen("room-1")
        emu.drop()
        wait_until(lambda: bot.stats.reconnects == 1, "the bot to reconnect")
        emu.wait_for_listeners("room-1", timeout=DEADLINE)


emu = Emulator(tokens=["test-token"], api_keys=["test-key"]).start()
try:
    {"user-code": user_code, "drops": drops, "flask": flask_app,
     "reconnect": reconnect}[SCENARIO](emu)
finally:
    emu.stop()
print("END", flush=True)
