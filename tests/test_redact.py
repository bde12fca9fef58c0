"""The one secret registry (watchers_bot._redact): which keys, which texts, and the log filter."""

from __future__ import annotations

import io
import logging
import types

import pytest

from watchers_bot._logging import RedactingFilter
from watchers_bot._redact import (
    MASK,
    SECRET_KEYS,
    forget_secrets,
    is_secret_key,
    mask_secrets,
    redact,
    register_secrets,
)


@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
def test_every_secret_key_is_masked_whatever_its_case(key):
    for spelled in (key, key.upper(), key.title()):
        assert is_secret_key(spelled)
        assert mask_secrets({spelled: "s3cr3t-value", "roomId": "r"}) == {
            spelled: MASK, "roomId": "r"}


@pytest.mark.parametrize("key", ["apiKey", "ApiKey", "bearer", "Authorization", "TOKEN"])
def test_the_wire_spellings_are_secret(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["roomId", "text", "tokens_used", "id", 1, None, ("token",)])
def test_other_keys_are_not_secret(key):
    assert not is_secret_key(key)
    assert mask_secrets({key: "kept"}) == {key: "kept"}


def test_nested_mappings_lists_and_tuples_are_masked_and_the_original_is_untouched():
    payload = {
        "roomId": "r",
        "auth": {"apiKey": "k-123456", "inner": [{"token": "t-123456"}, ("x", {"secret": 1})]},
        "view": types.MappingProxyType({"password": "p-123456", "n": 2}),
    }
    masked = mask_secrets(payload)
    assert masked == {
        "roomId": "r",
        "auth": {"apiKey": MASK, "inner": [{"token": MASK}, ["x", {"secret": MASK}]]},
        "view": {"password": MASK, "n": 2},
    }
    assert payload["auth"]["apiKey"] == "k-123456"  # a copy, not an edit
    assert payload["auth"]["inner"][0] == {"token": "t-123456"}


@pytest.mark.parametrize("value", ["text", 3, 2.5, True, None, b"bytes"])
def test_values_that_are_not_containers_come_back_as_they_are(value):
    assert mask_secrets(value) is value


@pytest.mark.parametrize(("text", "expected"), [
    ('{"apiKey":"k-123456","roomId":"r"}', '{"apiKey":"***","roomId":"r"}'),
    ("{'token': 't-123456', 'roomId': 'r'}", "{'token': '***', 'roomId': 'r'}"),
    ('{"Authorization" : "x\\"y"}', '{"Authorization" : "***"}'),
    ("header Bearer abcdefgh.ijk-LMN", "header Bearer ***"),
    ("bearer abc", "bearer abc"),  # too short to be a credential
    ("roomId room-1 has a token word in it", "roomId room-1 has a token word in it"),
])
def test_secret_looking_pairs_and_bearer_headers_are_masked_in_text(text, expected):
    assert redact(text) == expected


def test_given_values_are_masked_wherever_they_appear_and_short_ones_are_not():
    text = "connect with s3cr3t-token to room ab (and again s3cr3t-token)"
    assert redact(text, ["s3cr3t-token", "ab", None, ""]) == (
        "connect with *** to room ab (and again ***)")
    assert redact("key: my-key-value", ["  my-key-value\n"]) == "key: ***"


def test_the_longer_of_two_overlapping_secrets_is_masked_whole():
    assert redact("id abcd-efgh-1234 end", ["abcd", "abcd-efgh-1234"]) == "id *** end"


def test_registered_secrets_are_masked_until_forgotten_as_often_as_registered():
    secret = "registered-value-123"
    register_secrets([secret])
    register_secrets([secret])
    try:
        assert redact(f"got {secret}") == "got ***"
        forget_secrets([secret])
        assert redact(f"got {secret}") == "got ***"  # still registered once
    finally:
        forget_secrets([secret])
    assert redact(f"got {secret}") == f"got {secret}"


def _capture(logger_name: str):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, handler, stream


def test_the_logging_filter_masks_messages_and_their_arguments_at_debug():
    logger, handler, stream = _capture("watchers_bot.tests.redact")
    secret = "filter-secret-9876"
    register_secrets([secret])
    try:
        logger.debug("payload %s", {"apiKey": "k-999999", "roomId": "r"})
        logger.debug("the token is %s", secret)
        logger.debug("plain %d", 7)
    finally:
        forget_secrets([secret])
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ["payload {'apiKey': '***', 'roomId': 'r'}", "the token is ***", "plain 7"]


def test_the_logging_filter_keeps_a_malformed_record_masked_instead_of_dropping_it():
    record = logging.LogRecord("watchers_bot", logging.WARNING, __file__, 1,
                               "bad %d format with {'token': 'tok-123456'}", ("not a number",),
                               None)
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == "bad %d format with {'token': '***'}"
