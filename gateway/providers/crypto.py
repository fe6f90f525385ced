"""API keys at rest: Fernet with a key derived from Django's SECRET_KEY (HKDF-SHA256), and the
mask every response shows instead of the key (chat-sessions-cron.md §4.2)."""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

HKDF_SALT = b"anima-gateway"
HKDF_INFO = b"anima.providers.apiKey.v1"


@lru_cache(maxsize=4)
def _fernet(secret: str) -> Fernet:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


def encrypt(plain: str) -> str:
    """The stored form of an API key ("" stays "")."""
    return _fernet(settings.SECRET_KEY).encrypt(plain.encode()).decode() if plain else ""


def decrypt(stored: str) -> str | None:
    """The API key, or None when it cannot be decrypted (SECRET_KEY changed since it was stored)."""
    if not stored:
        return ""
    try:
        return _fernet(settings.SECRET_KEY).decrypt(stored.encode()).decode()
    except InvalidToken:
        return None


def mask(key: str) -> str:
    """First 7 characters + "..." + last 4; "***" when shorter than 12 characters."""
    return "***" if len(key) < 12 else f"{key[:7]}...{key[-4:]}"


def is_masked(key: str) -> bool:
    """A masked echo of a stored key (set keeps the stored key for it)."""
    return "..." in key or key == "***"
