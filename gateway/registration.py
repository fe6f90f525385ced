"""NoxSoft agent registration (anima.registration.*, operations.md §4). The service lives at
ANIMA_NOXSOFT_AUTH_BASE; when it cannot be reached, status still answers (with verifyError) and
the writing methods answer 503 without touching the stored token. The token is stored
encrypted in the Registration row (README D7), never in a file and never shown whole."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from gateway.models import Registration
from gateway.protocol.errors import invalid, unavailable
from gateway.protocol.events import now_ms
from gateway.providers import crypto

TOKEN_PATH = "db:default/registration"
ADJECTIVES = ("amber", "bright", "calm", "clever", "cosmic", "gentle", "lucid", "nimble", "quiet", "radiant",
              "steady", "swift", "vivid", "wise", "brave", "kind")
NOUNS = ("atlas", "beacon", "comet", "ember", "falcon", "harbor", "lantern", "meadow", "nova", "orbit", "pioneer",
         "quill", "river", "sparrow", "tide", "willow")


class Unreachable(Exception):
    """The registration service did not answer."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _call(method: str, path: str, *, token: str | None = None, body: dict | None = None) -> Answer:
    url = settings.ANIMA_NOXSOFT_AUTH_BASE.rstrip("/") + path
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=settings.ANIMA_NOXSOFT_TIMEOUT_S) as response:  # noqa: S310
            status, raw = response.status, response.read(1024 * 1024)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(64 * 1024)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unreachable(str(getattr(exc, "reason", exc))) from None
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return Answer(status, parsed, text)


def _agent_of(body: Any) -> dict[str, Any] | None:
    agent = body.get("agent", body) if isinstance(body, dict) else None
    if not isinstance(agent, dict):
        return None
    return {k: agent.get(k) for k in ("id", "name", "display_name")}


def verify(token: str) -> Answer:
    """POST /authenticate, falling back to GET /whoami (raises Unreachable)."""
    answer = _call("POST", "/authenticate", token=token)
    if answer.status in (404, 405):
        answer = _call("GET", "/whoami", token=token)
    return answer


def suggested_identity() -> dict[str, str]:
    """Deterministic per host: an adjective and a noun picked by SHA-256 of host:profile:platform."""
    seed = hashlib.sha256(f"{socket.gethostname()}:default:{platform.system().lower()}".encode()).digest()
    adjective, noun = ADJECTIVES[seed[0] % len(ADJECTIVES)], NOUNS[seed[1] % len(NOUNS)]
    name = re.sub(r"[^a-z0-9_-]", "", f"{adjective}-{noun}".lower())[:30]
    return {"name": name, "displayName": f"{adjective.title()} {noun.title()}"[:50]}


def _stored() -> tuple[str | None, dict | None]:
    row = Registration.objects.filter(pk=1).first()
    if row is None or not row.token_encrypted:
        return None, None
    return crypto.decrypt(row.token_encrypted), row.agent


def _preview(token: str) -> str:
    return f"{token[:10]}...{token[-4:]}" if len(token) > 14 else "***"


def status() -> dict[str, Any]:
    """anima.registration.status: works offline (verifyError says why nothing was verified)."""
    token, agent = _stored()
    out: dict[str, Any] = {"tokenPresent": bool(token), "tokenPath": TOKEN_PATH,
                           "tokenPreview": _preview(token) if token else None, "agent": agent,
                           "suggestedIdentity": suggested_identity(), "invalidToken": False}
    if token:
        try:
            answer = verify(token)
        except Unreachable as exc:
            out.update(agent=None, verifyError=f"unreachable: {exc}")
        else:
            if answer.ok:
                out["agent"] = _agent_of(answer.body) or agent
            else:
                out.update(agent=None, invalidToken=True)
    return out


@transaction.atomic
def _save(token: str, agent: dict | None) -> None:
    Registration.objects.update_or_create(pk=1, defaults={"token_encrypted": crypto.encrypt(token), "agent": agent,
                                                          "updated_at_ms": now_ms()})


def set_token(raw: str | None) -> dict[str, Any]:
    """anima.registration.set-token: kept only once the service has verified it."""
    token = (raw or "").strip()
    if not token:
        raise invalid("token is required", details={"errors": [{"path": "/token", "message": "required"}]})
    try:
        answer = verify(token)
    except Unreachable as exc:
        raise unavailable(f"NoxSoft registration service unreachable ({settings.ANIMA_NOXSOFT_AUTH_BASE}): {exc}; "
                          "the token was not saved") from None
    if not answer.ok:
        raise invalid("token could not be verified")
    agent = _agent_of(answer.body)
    _save(token, agent)
    return {"ok": True, "agent": agent}


def register_invite(code: str | None, name: str | None, display_name: str | None,
                    description: str | None) -> dict[str, Any]:
    """anima.registration.register-invite: the service issues the token; only its preview is returned."""
    invite = (code or "").strip()
    if not invite:
        raise invalid("code is required", details={"errors": [{"path": "/code", "message": "required"}]})
    suggested = suggested_identity()
    body: dict[str, Any] = {"code": invite, "name": (name or "").strip() or suggested["name"],
                            "display_name": (display_name or "").strip() or suggested["displayName"]}
    if description and description.strip():
        body["description"] = description.strip()
    try:
        answer = _call("POST", "/register", body=body)
    except Unreachable as exc:
        raise unavailable(f"NoxSoft registration service unreachable ({settings.ANIMA_NOXSOFT_AUTH_BASE}): {exc}") from None
    token = answer.body.get("token") if isinstance(answer.body, dict) else None
    if not answer.ok or not isinstance(token, str) or not token:
        raise unavailable(f"NoxSoft registration (invite) failed ({answer.status}): {answer.text[:500]}")
    agent = _agent_of(answer.body)
    _save(token, agent)
    return {"ok": True, "agent": agent, "tokenPreview": _preview(token)}
