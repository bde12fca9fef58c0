"""watchers_bot.Router: commands, regexes, rooms, senders, predicates, fallback, include."""

import logging
import re

import pytest
from helpers import make_bot, wait_until

from watchers_bot import Context, Message, Router


def message(text, room="r", user="human", msg_id=1):
    raw = {"roomId": room, "message": {"id": msg_id, "text": text}, "userId": user}
    return Message(room_id=room, id=msg_id, text=text, user_id=user, project="p", raw=raw)


@pytest.fixture
def call(emulator):
    bot = make_bot(emulator)  # not connected: only the context's bot

    def call(router, text, **kwargs):
        msg = message(text, **kwargs)
        return router(msg, Context(bot, msg))

    yield call
    bot.close()


def test_command_hands_over_its_arguments(call):
    router = Router()

    @router.command("start")
    def start(msg, ctx):
        return f"{ctx.command}|{ctx.args}|{list(ctx.argv)}"

    assert call(router, "/start") == "start||[]"
    assert call(router, "/start  some  args ") == "start|some  args|['some', 'args']"
    assert call(router, "/started") is None  # another command
    assert call(router, "please /start") is None  # not at the start
    assert router.unmatched == 2


def test_regex_hands_over_the_match_and_handlers_may_take_the_message_alone(call):
    router = Router()

    @router.message(regex=r"order #(\d+)")
    def order(msg, ctx):
        return "order " + ctx.match.group(1)

    @router.message(regex=re.compile("hello", re.I))
    def hello(msg):
        return "hi " + msg.user_id

    assert call(router, "where is my order #42?") == "order 42"
    assert call(router, "HELLO there", user="ann") == "hi ann"
    assert call(router, "nothing") is None


def test_first_match_wins_in_registration_order_and_the_fallback_catches_the_rest(call):
    router = Router()
    router.command("help")(lambda msg: "help")
    router.message(regex="help")(lambda msg: "regex help")
    router.message(rooms=["vip"])(lambda msg: "vip")
    router.message(senders="boss")(lambda msg: "boss")
    router.message(predicate=lambda m: m.text.isupper())(lambda msg: "calm down")
    router.message()(lambda msg: "fallback")

    assert call(router, "/help") == "help"
    assert call(router, "I need help") == "regex help"
    assert call(router, "x", room="vip") == "vip"
    assert call(router, "x", user="boss") == "boss"
    assert call(router, "WHY") == "calm down"
    assert call(router, "why") == "fallback"
    assert router.unmatched == 0
    assert router.routes[-1].is_fallback


def test_filters_combine(call):
    router = Router()

    @router.command("ban", rooms="mods", senders={"ann"})
    def ban(msg, ctx):
        return "banned " + ctx.args

    assert call(router, "/ban bob", room="mods", user="ann") == "banned bob"
    assert call(router, "/ban bob", room="mods", user="bob") is None
    assert call(router, "/ban bob", room="lobby", user="ann") is None


def test_include_tries_the_other_routers_routes_at_that_place(call):
    admin = Router()
    admin.command("stats")(lambda msg: "admin stats")
    main = Router()
    main.command("start")(lambda msg: "start")
    main.include(admin)
    main.message()(lambda msg: "fallback")
    admin.command("late")(lambda msg: "late")  # added after include: still tried before fallback

    assert call(main, "/stats") == "admin stats"
    assert call(main, "/late") == "late"
    assert call(main, "/other") == "fallback"
    with pytest.raises(ValueError, match="itself"):
        admin.include(main)


def test_bad_arguments_are_refused_naming_them():
    router = Router()
    with pytest.raises(ValueError, match="command name"):
        router.command("two words")
    with pytest.raises(TypeError, match="command name"):
        router.command(5)
    with pytest.raises(ValueError, match="regex"):
        router.message(regex="(")
    with pytest.raises(TypeError, match="regex"):
        router.message(regex=5)
    with pytest.raises(TypeError, match="rooms"):
        router.message(rooms=[1])
    with pytest.raises(ValueError, match="senders"):
        router.message(senders=[])
    with pytest.raises(TypeError, match="predicate"):
        router.message(predicate="yes")
    with pytest.raises(TypeError, match="include"):
        router.include(lambda msg: None)


def test_a_router_runs_on_the_pool_and_failures_are_counted_per_route(emulator, caplog):
    router = Router()

    @router.command("echo")
    def echo(msg, ctx):
        return ctx.args

    @router.command("boom")
    def boom(msg):
        raise RuntimeError("route bug")

    caplog.set_level(logging.ERROR, logger="watchers_bot.handler")
    with make_bot(emulator) as bot:
        bot.listen("a", "b")
        handle = bot.run_in_thread(router, workers=2)
        emulator.post("a", "/boom")
        emulator.post("a", "/echo one")
        emulator.post("b", "/echo two")
        emulator.post("b", "not a command")
        sent = emulator.wait_for_sent(2)
        wait_until(lambda: router.unmatched == 1, what="unmatched counted")
        handle.stop(5)
    assert sorted(s.text for s in sent) == ["one", "two"]
    stats = router.stats()
    assert stats[echo.__qualname__].handled == 2
    assert stats[boom.__qualname__].errors == 1
    assert handle.errors == 1
    assert "route bug" in caplog.text
    assert boom.__qualname__ in caplog.text  # the report names the route
