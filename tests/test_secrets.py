"""Secret comparison and token hashing (auth-and-pairing.md §1.3, README D5)."""

from __future__ import annotations

import hashlib

import pytest

from gateway.protocol.secrets import hash_token, new_token, safe_equal, token_matches


def test_safe_equal_accepts_equal_strings() -> None:
    assert safe_equal("s3cret-token", "s3cret-token")
    assert safe_equal("", "")


def test_safe_equal_rejects_different_strings_of_the_same_length() -> None:
    assert not safe_equal("s3cret-token", "s3cret-tokeN")


def test_safe_equal_rejects_different_lengths() -> None:
    assert not safe_equal("short", "short-but-longer")
    assert not safe_equal("prefix", "prefix\x00")
    assert not safe_equal("", "x")


@pytest.mark.parametrize("other", [None, 123, b"s3cret", ["s3cret"], {"token": "s3cret"}])
def test_safe_equal_is_false_for_non_strings(other: object) -> None:
    assert not safe_equal("s3cret", other)
    assert not safe_equal(other, "s3cret")


def test_safe_equal_handles_non_ascii() -> None:
    assert safe_equal("pässwörd", "pässwörd")
    assert not safe_equal("pässwörd", "passwort")


def test_hash_token_is_hex_sha256() -> None:
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(hash_token("anything")) == 64


def test_token_matches_its_hash_only() -> None:
    token = new_token()
    stored = hash_token(token)
    assert token_matches(token, stored)
    assert not token_matches(token + "x", stored)
    assert not token_matches("", stored)
    assert not token_matches(None, stored)
    assert not token_matches(42, stored)


def test_new_tokens_are_43_char_base64url_and_unique() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert len(token) == 43
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
