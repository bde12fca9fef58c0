"""A Flask app that talks through one Watchers bot per process.

Run it against the emulator::

    watchers-bot serve --port 8765 --token t --api-key k &
    export WATCHERS_TOKEN=t WATCHERS_API_KEY=k WATCHERS_BOT_ID=flask-bot \\
           WATCHERS_URL=http://127.0.0.1:8765 WATCHERS_ROOMS=room-1
    flask --app examples/flask_app/app.py run --debug     # or: python examples/flask_app/app.py
    curl -X POST localhost:5000/send -H 'content-type: application/json' \\
         -d '{"room": "room-1", "text": "hello"}'
    curl localhost:5000/health

Post "ping" in room-1 (``watchers-bot`` or the emulator) and the bot answers "pong".
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Tuple

from flask import Flask, Response, current_app, jsonify, request

from watchers_bot import Message
from watchers_bot.contrib.flask import WatchersBot, error_response

watchers = WatchersBot()


@watchers.on_message
def pong(msg: Message) -> None:
    """Answer "ping" with "pong" (runs on the bot's handler thread, in an app context)."""
    if msg.text.strip().lower() == "ping":
        watchers.bot.reply(msg, current_app.config.get("PONG_TEXT", "pong"))


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """The app factory: ``WATCHERS_*`` settings come from ``config`` or the environment."""
    app = Flask(__name__)
    app.config.update(config or {})
    watchers.init_app(app)

    @app.post("/send")
    def send() -> Tuple[Response, int]:
        data: Dict[str, Any] = request.get_json(silent=True) or {}
        room, text = data.get("room"), data.get("text")
        if not isinstance(room, str) or not isinstance(text, str):
            return jsonify(ok=False, error="give a JSON body with 'room' and 'text' strings"), 400
        try:
            ack = watchers.send(room, text, timeout=data.get("timeout"))
        except Exception as exc:  # mapped to 502/503/504/400; others re-raised
            return error_response(exc)
        return jsonify(ok=True, ack=ack), 200

    app.add_url_rule("/health", view_func=watchers.health_view)
    return app


if __name__ == "__main__":
    # ``python app.py``: the Werkzeug reloader runs this file twice (a watcher
    # and a server); only the server process ever connects (see the module).
    create_app().run(
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "5000")),
        debug=os.environ.get("FLASK_DEBUG") == "1",
    )
