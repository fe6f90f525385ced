"""Ed25519 device identity (auth-and-pairing.md §2): ids, key decoding, signed payloads."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pairing.crypto import b64url_decode, b64url_encode, device_id_for, raw_public_key, signed_payload, verify
from tests.support import DeviceKey, b64url


def test_device_id_is_hex_sha256_of_the_raw_key() -> None:
    device = DeviceKey()
    assert device_id_for(device.raw_public_key) == hashlib.sha256(device.raw_public_key).hexdigest() == device.id
    assert len(device.id) == 64 and device.id == device.id.lower()


def test_base64url_public_key_decodes_to_the_raw_32_bytes() -> None:
    device = DeviceKey()
    assert raw_public_key(device.public_key) == device.raw_public_key
    assert raw_public_key(device.public_key + "=") == device.raw_public_key, "padding is optional"


def test_standard_base64_alphabet_also_decodes() -> None:
    raw = bytes(range(200, 232))  # has bytes that encode to + and / in the standard alphabet
    assert raw_public_key(base64.b64encode(raw).decode()) == raw


def test_pem_spki_public_key_is_accepted() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert raw_public_key(pem) == raw


@pytest.mark.parametrize("bad", [
    "", "abc", b64url(b"\x01" * 31), b64url(b"\x01" * 33), "not base64 at all!!",
    "-----BEGIN PUBLIC KEY-----\n@@@@\n-----END PUBLIC KEY-----", "ключ",
])
def test_bad_public_keys_are_none(bad: str) -> None:
    assert raw_public_key(bad) is None


def test_pem_of_another_key_type_is_none() -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = rsa.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert raw_public_key(pem) is None


def test_b64url_round_trip_without_padding() -> None:
    for n in range(0, 40):
        data = bytes(range(n))
        text = b64url_encode(data)
        assert "=" not in text
        assert b64url_decode(text) == data


def test_v1_payload_without_nonce() -> None:
    text = signed_payload(device_id="dev", client_id="cli", client_mode="cli", role="operator",
                          scopes=["operator.read", "operator.admin"], signed_at=1700000000000, token="tok",
                          nonce=None)
    assert text == "v1|dev|cli|cli|operator|operator.read,operator.admin|1700000000000|tok"


def test_v2_payload_with_nonce() -> None:
    text = signed_payload(device_id="dev", client_id="ui", client_mode="webchat", role="node", scopes=[],
                          signed_at=5, token=None, nonce="n-1")
    assert text == "v2|dev|ui|webchat|node||5||n-1"


def test_scopes_keep_the_order_sent() -> None:
    a = signed_payload(device_id="d", client_id="c", client_mode="m", role="operator", scopes=["b", "a"],
                       signed_at=1, token="", nonce=None)
    assert "|b,a|" in a


def test_verify_accepts_a_good_signature() -> None:
    device = DeviceKey()
    message = signed_payload(device_id=device.id, client_id="c", client_mode="m", role="operator",
                             scopes=["operator.read"], signed_at=1, token="t", nonce="n")
    assert verify(device.raw_public_key, device.sign(message), message)


def test_verify_rejects_a_tampered_message_or_another_key() -> None:
    device, other = DeviceKey(), DeviceKey()
    message = "v1|x|c|m|operator|operator.read|1|"
    signature = device.sign(message)
    assert not verify(device.raw_public_key, signature, message.replace("operator.read", "operator.admin"))
    assert not verify(other.raw_public_key, signature, message)


@pytest.mark.parametrize("signature", ["", "AAAA", "!!!not-base64!!!", b64url(b"\x00" * 64), "é"])
def test_verify_rejects_malformed_signatures(signature: str) -> None:
    device = DeviceKey()
    assert not verify(device.raw_public_key, signature, "v1|x")
