"""Ed25519 device identity (auth-and-pairing.md §2): ids, key decoding, signed payloads."""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public_key(public_key: str) -> bytes | None:
    """The 32 raw key bytes from base64url (or a PEM SPKI block); None if it is not a key."""
    try:
        if "BEGIN" in public_key:
            body = "".join(line for line in public_key.strip().splitlines() if "-----" not in line)
            der = base64.b64decode(body)
            raw = der[len(SPKI_PREFIX):] if der.startswith(SPKI_PREFIX) else b""
        else:
            raw = b64url_decode(public_key)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def device_id_for(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def signed_payload(*, device_id: str, client_id: str, client_mode: str, role: str, scopes: list[str],
                   signed_at: int, token: str | None, nonce: str | None) -> str:
    """v1 without a nonce, v2 with one (§2.3); scopes in the order sent."""
    parts = ["v2" if nonce else "v1", device_id, client_id, client_mode, role, ",".join(scopes),
             str(signed_at), token or ""]
    if nonce:
        parts.append(nonce)
    return "|".join(parts)


def verify(raw_key: bytes, signature: str, message: str) -> bool:
    try:
        sig = b64url_decode(signature)
        Ed25519PublicKey.from_public_bytes(raw_key).verify(sig, message.encode())
        return True
    except (InvalidSignature, ValueError, binascii.Error):
        return False
