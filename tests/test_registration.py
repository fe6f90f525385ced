"""anima.registration.* (operations.md §4): status works offline; set-token and register-invite
answer 503 without touching the stored token when the service cannot be reached, 400 when it
rejects a token, and store the token (encrypted) only once the service accepted it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from gateway import registration
from gateway.client import RpcError
from gateway.models import Registration
from gateway.protocol.errors import GatewayError
from tests.support import READ, WRITE, free_port

GOOD = "nox-token-0123456789-good"
AGENT = {"id": "a1", "name": "bright-comet", "display_name": "Bright Comet"}


class FakeNoxSoft(BaseHTTPRequestHandler):
    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.endswith("/authenticate"):
            ok = self.headers.get("Authorization") == f"Bearer {GOOD}"
            self._answer(200 if ok else 401, {"agent": AGENT} if ok else {"error": "bad token"})
        elif self.path.endswith("/register"):
            if body.get("code") == "invite-ok":
                self._answer(201, {"token": GOOD, "agent": AGENT})
            else:
                self._answer(403, {"error": "invite expired"})
        else:
            self._answer(404, {})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service(settings) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeNoxSoft)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ANIMA_NOXSOFT_AUTH_BASE = f"http://127.0.0.1:{server.server_port}/api/agents"
    yield settings.ANIMA_NOXSOFT_AUTH_BASE
    server.shutdown()
    server.server_close()


@pytest.fixture
def offline(settings) -> None:
    settings.ANIMA_NOXSOFT_AUTH_BASE = f"http://127.0.0.1:{free_port()}/api/agents"


def reason_of(call, *args) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call(*args)
    return caught.value


@pytest.mark.django_db
def test_status_without_token_needs_no_service(offline):
    status = registration.status()
    assert status["tokenPresent"] is False and status["agent"] is None and status["invalidToken"] is False
    assert 3 <= len(status["suggestedIdentity"]["name"]) <= 30
    assert status["suggestedIdentity"] == registration.status()["suggestedIdentity"]


@pytest.mark.django_db
def test_set_token_offline_is_unavailable_and_stores_nothing(offline):
    err = reason_of(registration.set_token, GOOD)
    assert err.reason == "UNAVAILABLE" and "unreachable" in err.message
    assert not Registration.objects.exists()


@pytest.mark.django_db
def test_register_invite_offline_is_unavailable_and_keeps_the_stored_token(offline, service, settings):
    registration.set_token(GOOD)
    settings.ANIMA_NOXSOFT_AUTH_BASE = f"http://127.0.0.1:{free_port()}/api/agents"
    assert reason_of(registration.register_invite, "invite-ok", None, None, None).reason == "UNAVAILABLE"
    assert registration._stored()[0] == GOOD
    status = registration.status()  # still answers, and says why nothing was verified
    assert status["tokenPresent"] is True and status["agent"] is None and status["invalidToken"] is False
    assert status["verifyError"].startswith("unreachable: ")


@pytest.mark.django_db
@pytest.mark.parametrize("call, message", [(lambda: registration.set_token("  "), "token is required"),
                                           (lambda: registration.register_invite("", None, None, None),
                                            "code is required")])
def test_missing_token_or_code_is_invalid(call, message, offline):
    assert reason_of(call).message == message


@pytest.mark.django_db
def test_a_verified_token_is_stored_encrypted_and_shown_as_a_preview(service):
    assert registration.set_token(GOOD) == {"ok": True, "agent": AGENT}
    row = Registration.objects.get(pk=1)
    assert GOOD not in row.token_encrypted
    status = registration.status()
    assert status["tokenPresent"] and status["tokenPreview"] == "nox-token-...good" and status["agent"] == AGENT
    assert GOOD not in json.dumps(status)


@pytest.mark.django_db
def test_a_rejected_token_is_invalid_and_not_kept(service):
    err = reason_of(registration.set_token, "nox-wrong-token-zzzz")
    assert err.reason == "INVALID_REQUEST" and err.message == "token could not be verified"
    assert not Registration.objects.exists()


@pytest.mark.django_db
def test_register_invite_stores_the_issued_token_and_returns_only_a_preview(service):
    res = registration.register_invite("invite-ok", "me", None, None)
    assert res["agent"] == AGENT and res["tokenPreview"] == "nox-token-...good" and GOOD not in json.dumps(res)
    err = reason_of(registration.register_invite, "invite-old", None, None, None)
    assert err.reason == "UNAVAILABLE" and "(403)" in err.message


async def test_rpc_status_for_readers_and_write_scope_for_set_token(client):
    reader = await client(READ)
    status = await reader.call("anima.registration.status", {})
    assert status["tokenPath"] == "db:default/registration"
    with pytest.raises(RpcError) as caught:
        await reader.call("anima.registration.set-token", {"token": "x"})
    assert caught.value.code == 403
    writer = await client(WRITE)
    with pytest.raises(RpcError) as caught:
        await writer.call("anima.registration.set-token", {"token": 42})
    assert caught.value.code == 400 and caught.value.error["details"]["errors"][0]["path"] == "/token"
