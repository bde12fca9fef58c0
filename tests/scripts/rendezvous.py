"""Handlers that tell whether rooms are handled at once (``--workers``).

A message in room-a waits (up to 5 s) for one in room-b: with one worker the
room-b message cannot run meanwhile and room-a answers "alone"; with two it
answers "met b".  ``handle`` is for runbot; ``create_app`` a Flask app for
``flask watchers run``.
"""

import threading

from flask import Flask

from watchers_bot.contrib.flask import WatchersBot

met = threading.Event()


def handle(message):
    if message.room_id == "room-b":
        met.set()
        return "b here"
    return "met b" if met.wait(5) else "alone"


watchers = WatchersBot()
watchers.on_message(handle)


def create_app():
    app = Flask(__name__)
    watchers.init_app(app)
    return app
