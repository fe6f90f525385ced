"""The one error type of the gateway. Handlers raise it with a symbolic reason; the dialect
at the socket edge turns it into the wire error object (README D2)."""

from __future__ import annotations

from typing import Any

# reason -> numeric code (seed dialect)
SEED_CODES: dict[str, int] = {
    "INVALID_REQUEST": 400, "PROTOCOL_MISMATCH": 400,
    "UNAUTHORIZED": 401, "TOKEN_MISMATCH": 401, "TOKEN_MISSING": 401, "PASSWORD_MISMATCH": 401,
    "PASSWORD_MISSING": 401, "DEVICE_TOKEN_MISMATCH": 401, "DEVICE_TOKEN_REVOKED": 401,
    "DEVICE_SIGNATURE_INVALID": 401, "DEVICE_NONCE_MISMATCH": 401, "DEVICE_NONCE_REQUIRED": 401,
    "DEVICE_IDENTITY_MISMATCH": 401, "DEVICE_PUBLIC_KEY_INVALID": 401, "SIGNATURE_EXPIRED": 401,
    "FORBIDDEN": 403, "MISSING_SCOPE": 403, "NOT_PAIRED": 403,
    "NOT_FOUND": 404, "CONFLICT": 409, "PAYLOAD_TOO_LARGE": 413, "RATE_LIMITED": 429,
    "INTERNAL": 500, "UNAVAILABLE": 503, "NOT_LINKED": 503, "TIMEOUT": 504, "AGENT_TIMEOUT": 504,
}

# reason -> ANIMA's string code (v3 dialect); everything else is INVALID_REQUEST
V3_CODES: dict[str, str] = {
    "NOT_PAIRED": "NOT_PAIRED", "UNAVAILABLE": "UNAVAILABLE", "INTERNAL": "UNAVAILABLE",
    "NOT_LINKED": "NOT_LINKED", "AGENT_TIMEOUT": "AGENT_TIMEOUT", "TIMEOUT": "AGENT_TIMEOUT",
}


class GatewayError(Exception):
    """A failure that reaches the client as an error response."""

    def __init__(self, reason: str, message: str, *, details: Any = None, retryable: bool | None = None,
                 retry_after_ms: int | None = None, payload: Any = None):
        assert reason in SEED_CODES, reason
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms
        self.payload = payload  # a few methods answer a payload beside the error (protocol.md §1.3)

    @property
    def code(self) -> int:
        return SEED_CODES[self.reason]

    def __repr__(self) -> str:
        return f"GatewayError({self.reason!r}, {self.message!r})"


def invalid(message: str, **kw: Any) -> GatewayError:
    return GatewayError("INVALID_REQUEST", message, **kw)


def not_found(message: str, **kw: Any) -> GatewayError:
    return GatewayError("NOT_FOUND", message, **kw)


def unavailable(message: str, **kw: Any) -> GatewayError:
    return GatewayError("UNAVAILABLE", message, **kw)


def conflict(message: str, **kw: Any) -> GatewayError:
    return GatewayError("CONFLICT", message, **kw)


INTERNAL_MESSAGE = "internal error (see the gateway log)"
