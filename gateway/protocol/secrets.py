"""Secret comparison and token hashing (auth-and-pairing.md §1.3, README D5)."""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets


def safe_equal(a: object, b: object) -> bool:
    """Constant time in content and length: compare SHA-256 digests of both values."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return hmac.compare_digest(hashlib.sha256(a.encode()).digest(), hashlib.sha256(b.encode()).digest())


def new_token() -> str:
    """32 random bytes, base64url without padding (43 chars)."""
    return _secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored only as this hex SHA-256 (README D5)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: object, stored_hash: str) -> bool:
    if not isinstance(token, str):
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)
