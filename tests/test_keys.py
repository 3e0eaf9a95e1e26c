from __future__ import annotations

import sys

import pytest

from idempotency.exceptions import IdempotencyKeyInvalid
from idempotency.keys import operation_key, parse_key


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("abc", "abc"),
        ("pay_8f7a9c2", "pay_8f7a9c2"),
        ("  padded\t", "padded"),
        ('"abc"', "abc"),
        ('"a\\"b"', 'a"b'),
        ('"a\\\\b"', "a\\b"),
        ("!#$%&'()*+-./:;<=>?@[]^_`{|}~", "!#$%&'()*+-./:;<=>?@[]^_`{|}~"),
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
    ],
)
def test_valid_keys(raw, key):
    assert parse_key(raw, 255) == key


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ('""', "empty"),
        ("a" * 11, "longer than 10"),
        ("a,b", "visible ASCII"),
        ("a b", "visible ASCII"),
        ("caf\u00e9", "visible ASCII"),
        ("a\x00b", "visible ASCII"),
        ("a\nb", "visible ASCII"),
        ('"abc', "malformed"),
        ('"a"b"', "malformed"),
        ('"a\\b"', "malformed"),
        ('"tab\there"', "malformed"),
    ],
)
def test_invalid_keys(raw, reason):
    with pytest.raises(IdempotencyKeyInvalid, match=reason):
        parse_key(raw, 10)


def test_quoted_key_with_a_space_is_a_valid_string_but_not_a_valid_key():
    with pytest.raises(IdempotencyKeyInvalid, match="visible ASCII"):
        parse_key('"a b"', 10)


def test_length_is_counted_after_unquoting():
    assert parse_key('"' + "a" * 10 + '"', 10) == "a" * 10


@pytest.mark.parametrize(("key", "text"), [("evt_1", "evt_1"), (12345, "12345"), (-7, "-7")])
def test_an_operation_key_is_text_or_an_int_as_its_digits(key, text):
    assert operation_key(key) == text


@pytest.mark.parametrize("key", [True, None, 1.5, b"evt", ["evt"]])
def test_any_other_operation_key_is_a_type_error(key):
    with pytest.raises(TypeError, match="must be a str or an int"):
        operation_key(key)


def test_a_key_may_hold_every_visible_ascii_character_but_the_comma_and_nothing_else():
    # parse_key checks by str methods, not a pattern: it must accept exactly 0x21-0x7E less ","
    # (RFC 9110's visible characters; a comma is how a repeated header arrives).
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        allowed = 0x21 <= code <= 0x7E and char != ","
        try:
            parse_key(f"a{char}b", 255)
        except IdempotencyKeyInvalid:
            assert not allowed, hex(code)
        else:
            assert allowed, hex(code)
