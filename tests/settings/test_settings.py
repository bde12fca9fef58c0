"""watchers_bot.settings: the one WATCHERS_* table and its readers, as the entry points use them."""

import subprocess
import sys

import pytest

from watchers_bot import Bot, ConfigError, settings


def layer(values, label="--{}"):
    return settings.Layer(lambda s: values.get(s.argument), lambda s: label.format(s.argument))


def test_every_setting_has_one_variable_and_the_secrets_are_the_credentials():
    envs = [s.env for s in settings.SETTINGS]
    assert len(envs) == len(set(envs))
    assert all(env.startswith("WATCHERS_") for env in envs)
    assert {s.env for s in settings.SETTINGS if s.secret} == {"WATCHERS_TOKEN", "WATCHERS_API_KEY"}
    assert [s.argument for s in settings.REQUIRED] == ["token", "api_key"]
    assert settings.get("token") is settings.get("WATCHERS_TOKEN") is settings.get("TOKEN")
    assert settings.get("api_key").option == "--api-key"
    with pytest.raises(KeyError, match="no such setting"):
        settings.get("colour")


@pytest.mark.parametrize(("env", "state"), [
    ({}, "WATCHERS_TOKEN is not set: "),
    ({"WATCHERS_TOKEN": ""}, "WATCHERS_TOKEN is set but empty: "),
    ({"WATCHERS_TOKEN": " \t"}, "WATCHERS_TOKEN is set but empty (only whitespace): "),
])
def test_not_set_empty_and_whitespace_are_told_apart(env, state):
    env = {"WATCHERS_API_KEY": "key-1", **env}
    with pytest.raises(ConfigError) as info:
        Bot.from_env(env)
    assert str(info.value).startswith(state)
    assert "key-1" not in str(info.value)


def test_the_first_layer_with_a_value_wins_and_strings_are_stripped():
    env = settings.env_layer({"WATCHERS_TOKEN": "from-env", "WATCHERS_BOT_ID": " b1 "})
    cli = layer({"token": "from-option", "bot_id": "  "})
    token = settings.lookup(settings.get("TOKEN"), [cli, env])
    assert (token.value, token.source) == ("from-option", "--token")
    bot_id = settings.lookup(settings.get("BOT_ID"), [cli, env])  # a blank option: next layer
    assert (bot_id.value, bot_id.source) == ("b1", "WATCHERS_BOT_ID")
    region = settings.lookup(settings.get("REGION"), [cli, env])
    assert (region.value, region.source) == ("eu", None)  # the default, from no layer


def test_a_blank_under_another_name_is_said_too():
    django = settings.Layer(lambda s: {"TOKEN": "", "API_KEY": "k"}.get(s.key),
                            lambda s: f"WATCHERS[{s.key!r}]")
    with pytest.raises(ConfigError) as info:
        settings.bot_arguments([django, settings.env_layer({"WATCHERS_TOKEN": "  "})],
                               lambda s: "add it", name=lambda s: f"WATCHERS[{s.key!r}]")
    # Whitespace says more than "": the environment's blank is the one reported.
    assert str(info.value) == ("WATCHERS['TOKEN'] is not set, and WATCHERS_TOKEN is set but "
                               "empty (only whitespace): add it")


def test_bot_arguments_leave_out_what_no_layer_has():
    env = settings.env_layer({"WATCHERS_TOKEN": "t", "WATCHERS_API_KEY": "k"})
    assert settings.bot_arguments([env], lambda s: "") == {"token": "t", "api_key": "k"}


def test_secret_values_come_from_every_layer():
    cli = layer({"token": "opt-token"})
    env = settings.env_layer({"WATCHERS_TOKEN": "env-token", "WATCHERS_API_KEY": "env-key",
                              "WATCHERS_BOT_ID": "not-a-secret"})
    assert sorted(settings.secret_values([cli, env])) == ["env-key", "env-token", "opt-token"]


@pytest.mark.parametrize(("value", "expected"), [
    ("0", False), ("off", False), (" No ", False), ("", False), ("1", True), ("yes", True),
    (True, True), (0, False),
])
def test_flag(value, expected):
    assert settings.flag(value) is expected


def test_parse_rooms():
    assert settings.parse_rooms(" a, b,,a ", "R") == ("a", "b")
    assert settings.parse_rooms(["x", " ", "y"], "R") == ("x", "y")
    assert settings.parse_rooms(None, "R") == ()
    with pytest.raises(ConfigError, match="R must contain room ids as strings"):
        settings.parse_rooms(["x", 1], "R")


@pytest.mark.parametrize(("value", "error"), [
    (0, ValueError), (-1, ValueError), (float("nan"), ValueError), (1e9, ValueError),
    ("5", TypeError), (True, TypeError),
])
def test_seconds_refuses_naming_the_argument(value, error):
    with pytest.raises(error, match="wait"):
        settings.seconds(value, "wait")


@pytest.mark.parametrize(("url", "insecure"), [
    ("ws://127.0.0.1:1", False), ("http://localhost", False), ("ws://[::1]:8", False),
    ("wss://example.com", False), ("ws://example.com", True), ("http://10.0.0.1", True),
])
def test_is_insecure_remote(url, insecure):
    assert settings.is_insecure_remote(url) is insecure


def test_importing_settings_imports_no_socketio():
    code = ("import sys, watchers_bot.settings; "
            "print(sorted(m for m in ('socketio', 'engineio', 'websocket') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr
