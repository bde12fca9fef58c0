"""Transcripts: a room's conversation saved as JSON, replayed against a bot.

The playground saves them, and a test can load one and replay its human turns
against the emulator without a browser::

    from watchers_bot.emulator import Transcript, replay

    transcript = Transcript.load("greeting.json")
    result = replay(emulator, transcript)          # posts the human turns, waits for answers
    assert result.bot_texts() == transcript.bot_texts()

The file is a JSON object: ``{"format": "watchers-bot-transcript", "version": 1,
"room": ..., "project": ..., "turns": [{"by": "human" | "bot", "user": ...,
"text": ...}, ...]}``.  It holds no credentials.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Union

import attrs

if TYPE_CHECKING:
    from . import Emulator

__all__ = ["FORMAT", "Transcript", "Turn", "replay"]

#: The ``format`` field of a transcript file.
FORMAT = "watchers-bot-transcript"
VERSION = 1
_BY = ("human", "bot")


@attrs.frozen
class Turn:
    """One message of a conversation."""

    #: ``"human"`` (posted in the room) or ``"bot"`` (sent by a bot).
    by: str
    #: the ``userId`` it was posted as.
    user: str
    #: its text.
    text: str

    def to_dict(self) -> Dict[str, str]:
        return {"by": self.by, "user": self.user, "text": self.text}


def _turn_list(turns: Iterable[Turn]) -> List[Turn]:
    return list(turns)


@attrs.frozen
class Transcript:
    """A room's conversation: its turns in order."""

    #: the room it happened in.
    room: str
    #: the turns, oldest first.
    turns: List[Turn] = attrs.field(converter=_turn_list)
    #: the emulator's ``project`` when it was saved.
    project: str = "demo"

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_dict(cls, data: Any) -> "Transcript":
        """Read the JSON object of a transcript file; ``ValueError`` names what is wrong."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a transcript must be a JSON object, not {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ValueError(f"not a transcript: format must be {FORMAT!r}")
        if data.get("version") != VERSION:
            raise ValueError(f"unsupported transcript version {data.get('version')!r}")
        room = data.get("room")
        if not isinstance(room, str) or not room:
            raise ValueError("transcript room must be a non-empty string")
        turns = data.get("turns")
        if not isinstance(turns, list):
            raise ValueError("transcript turns must be a list")
        parsed = []
        for n, turn in enumerate(turns):
            if not isinstance(turn, Mapping) or turn.get("by") not in _BY:
                raise ValueError(f"turn {n}: must be an object with by 'human' or 'bot'")
            user, text = turn.get("user"), turn.get("text")
            if not isinstance(user, str) or not isinstance(text, str):
                raise ValueError(f"turn {n}: user and text must be strings")
            parsed.append(Turn(turn["by"], user, text))
        project = data.get("project", "demo")
        return cls(room, parsed, project if isinstance(project, str) else "demo")

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "Transcript":
        """Read a transcript file (UTF-8 JSON)."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    @classmethod
    def from_messages(
        cls, room: str, project: str, messages: Iterable[Mapping[str, Any]]
    ) -> "Transcript":
        """Build one from the playground's message events (``by``, ``user``, ``text``)."""
        turns = [
            Turn(m["by"], str(m.get("user")), str(m.get("text")))
            for m in messages if m.get("by") in _BY
        ]
        return cls(room, turns, project)

    # ------------------------------------------------------------------ writing

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of the transcript file."""
        return {
            "format": FORMAT, "version": VERSION, "room": self.room, "project": self.project,
            "turns": [t.to_dict() for t in self.turns],
        }

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the transcript file (UTF-8 JSON, indented)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False, indent=2)
            f.write("\n")

    def bot_texts(self, from_turn: int = 0) -> List[str]:
        """The bots' answers from turn ``from_turn`` on, in order."""
        return [t.text for t in self.turns[from_turn:] if t.by == "bot"]

    def to_pytest(self, handler: str) -> str:
        """A pytest file replaying this transcript against ``handler``.

        ``handler`` is the import path of the bot's message handler,
        ``"module:function"`` (``handler(msg)`` or ``handler(msg, ctx)``
        returning the reply).  The test uses the ``watchers_emulator`` and
        ``watchers_bot`` fixtures of the pytest plugin and passes when the bot
        gives the same answers as in the transcript.
        """
        module, _, name = handler.partition(":")
        if not module.replace(".", "").replace("_", "").isalnum() or not name.isidentifier():
            raise ValueError(f"handler must be 'module:function', not {handler!r}")
        data = json.dumps(self.to_dict(), ensure_ascii=False, indent=4)
        return _PYTEST_TEMPLATE.format(
            room=self.room, module=module, name=name, transcript=data,
            safe=_safe_name(self.room),
        )


_PYTEST_TEMPLATE = '''\
"""Replays a conversation saved in the watchers-bot playground (room {room!r}).

Generated by watchers-bot: the bot must give the same answers as when it was saved.
Run with pytest; it uses the watchers-bot pytest plugin's fixtures.
"""

from {module} import {name} as handler

from watchers_bot.emulator import Transcript, replay
from watchers_bot.routing import Context, invoke

TRANSCRIPT = Transcript.from_dict(
{transcript}
)


def test_replay_{safe}(watchers_emulator, watchers_bot):
    bot = watchers_bot
    bot.listen(TRANSCRIPT.room)

    def answer(msg):
        reply = invoke(handler, msg, Context(bot, msg))
        if reply is not None:
            bot.reply(msg, reply)

    worker = bot.run_in_thread(answer)
    try:
        result = replay(watchers_emulator, TRANSCRIPT)
    finally:
        worker.stop()
    assert result.bot_texts() == TRANSCRIPT.bot_texts()
'''


def _safe_name(room: str) -> str:
    name = "".join(c if c.isalnum() else "_" for c in room).strip("_").lower()
    return name or "room"


def replay(
    emulator: "Emulator",
    transcript: Transcript,
    *,
    room: Optional[str] = None,
    from_turn: int = 0,
    timeout: float = 10.0,
) -> Transcript:
    """Post the human turns of ``transcript`` (from turn ``from_turn`` on) in ``room``.

    After each human turn it waits until the bots answered as many times as
    they did in the transcript before the next human turn (``TimeoutError``
    after ``timeout`` seconds for one turn).  Returns what happened, as a
    transcript: the human turns posted and the bots' answers.
    """
    if not isinstance(from_turn, int) or from_turn < 0:
        raise ValueError(f"from_turn must be an int >= 0, not {from_turn!r}")
    room = room or transcript.room
    turns = transcript.turns[from_turn:]
    result: List[Turn] = []

    def answers() -> List[Turn]:
        return [Turn("bot", m.user_id, m.text) for m in emulator.sent if m.room_id == room]

    seen = len(answers())
    for i, turn in enumerate(turns):
        if turn.by != "human":
            continue
        expected = 0
        for later in turns[i + 1:]:
            if later.by == "human":
                break
            expected += 1
        emulator.post(room, turn.text, user_id=turn.user)
        result.append(turn)
        want = seen + expected

        def answered(_: "Emulator", want: int = want) -> bool:
            return len(answers()) >= want

        try:
            emulator.wait_for(answered, timeout)
        except TimeoutError:
            got = answers()[seen:]
            raise TimeoutError(
                f"replay: after human turn {from_turn + i} ({turn.text[:40]!r}) expected "
                f"{expected} bot answer(s) within {timeout:g}s, got {len(got)}"
            ) from None
        new = answers()[seen:want]
        result.extend(new)
        seen = want
    return Transcript(room, result, transcript.project)
