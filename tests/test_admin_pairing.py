"""The Django admin as operators use it: logged in over HTTP against the same daphne process that
serves the WebSockets, so an admin action's events reach connected clients exactly as an RPC's
do (README D10). Pairing approve/reject, token revoke/rotate, node pairing and rename, exec
approval decisions, and "already resolved" answered with a message, never a 500."""

from __future__ import annotations

import asyncio
import html
import http.cookiejar
import re
import secrets
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

from gateway.client import GatewayClient
from tests.support import (
    PAIRING,
    PROJECT_DIR,
    PYTHON,
    READ,
    REMOTE,
    DeviceKey,
    GatewayServer,
    device_handshake,
    frames_until_close,
    still_usable,
)

APPROVALS = ["operator.approvals"]


# --- an operator's browser -------------------------------------------------------------------------

@dataclass
class Page:
    status: int
    url: str
    text: str
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text)

    def said(self, level: str) -> list[str]:
        return [text for lvl, text in self.messages if lvl == level]


MESSAGE_LIST = re.compile(r'<ul class="messagelist">(.*?)</ul>', re.DOTALL)
MESSAGE = re.compile(r'<li class="(\w+)">(.*?)</li>', re.DOTALL)


class AdminBrowser:
    """A logged-in admin session over plain HTTP (cookies, CSRF) - what a browser does."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies),
                                                  urllib.request.ProxyHandler({}))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.cookies if c.name == name)

    def open(self, path: str, data: dict[str, Any] | None = None) -> Page:
        body = None
        if data is not None:
            body = urllib.parse.urlencode({"csrfmiddlewaretoken": self.cookie("csrftoken"), **data}, doseq=True).encode()
        request = urllib.request.Request(self.base_url + path, data=body)
        try:
            with self.opener.open(request, timeout=20) as response:
                status, url, text = response.status, response.url, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, url, text = exc.code, exc.url, exc.read().decode(errors="replace")
        found = MESSAGE_LIST.search(text)
        said = [(lvl, html.unescape(re.sub(r"<[^>]+>", "", t)).strip())
                for lvl, t in MESSAGE.findall(found.group(1))] if found else []
        return Page(status, url, text, said)

    def login(self, username: str, password: str) -> None:
        self.open("/admin/login/")  # sets the csrftoken cookie
        page = self.open("/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/"})
        assert page.status == 200 and page.url.endswith("/admin/"), page.text[:2000]

    def action(self, model: str, action: str, *selected: str) -> Page:
        """Run a changelist action on the selected primary keys, as the action bar posts it."""
        return self.open(f"/admin/pairing/{model}/", {"action": action, "index": 0, "select_across": 0,
                                                      "_selected_action": list(selected)})


def create_superuser(server: GatewayServer, username: str, password: str) -> None:
    """The documented way: createsuperuser against the gateway's own database."""
    env = {**server.env, "DJANGO_SUPERUSER_PASSWORD": password}
    done = subprocess.run([PYTHON, "manage.py", "createsuperuser", "--noinput", "--username", username,
                           "--email", f"{username}@example.test"], cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def operator(gateway_server: GatewayServer) -> Iterator[AdminBrowser]:
    """A superuser logged in to the admin of the session's gateway."""
    username, password = f"op-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    create_superuser(gateway_server, username, password)
    browser = AdminBrowser(gateway_server.http_url)
    browser.login(username, password)
    yield browser


async def in_thread(fn: Any, *args: Any) -> Any:
    """HTTP calls block: keep the event loop (and the WebSocket readers) running meanwhile."""
    return await asyncio.to_thread(fn, *args)


async def next_matching(client: GatewayClient, event: str, predicate: Any, timeout: float = 10) -> dict:
    async def wait() -> dict:
        while True:
            frame = await client.next_event(event, timeout=timeout)
            if predicate(frame["payload"]):
                return frame
    return await asyncio.wait_for(wait(), timeout)


async def pairing_request(server: GatewayServer, device: DeviceKey, scopes: list[str]) -> str:
    """A remote device asks to connect: 403 NOT_PAIRED with the request id."""
    attempt = await device_handshake(server.url, device, token=server.token, scopes=scopes, headers=REMOTE)
    assert (attempt.error.get("code"), attempt.error.get("reason")) == (403, "NOT_PAIRED"), attempt.response
    await frames_until_close(attempt.ws)
    return attempt.error["details"]["requestId"]


# --- device pairing ------------------------------------------------------------------------------------

async def test_admin_approves_pending_device_and_pairers_hear_it(gateway_server, client, operator) -> None:
    pairer = await client(PAIRING)
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    await next_matching(pairer, "device.pair.requested", lambda p: p["requestId"] == request_id)

    listing = await in_thread(operator.open, "/admin/pairing/pairingrequest/")
    assert listing.status == 200 and request_id in listing.text

    page = await in_thread(operator.action, "pairingrequest", "approve", request_id)
    assert page.status == 200, page.text[:2000]
    assert any("approved" in m for m in page.said("success")), page.messages

    resolved = await next_matching(pairer, "device.pair.resolved", lambda p: p["requestId"] == request_id)
    assert resolved["payload"]["decision"] == "approved"
    assert resolved["payload"]["deviceId"] == device.id

    admitted = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                      headers=REMOTE)
    assert admitted.ok, admitted.response
    assert admitted.hello["auth"]["deviceToken"]
    conn = admitted.client()
    try:
        await still_usable(conn)
    finally:
        await conn.close()

    # The request stays listed (audit trail), marked as resolved by this admin login.
    detail = await in_thread(operator.open, f"/admin/pairing/pairingrequest/{request_id}/change/")
    assert detail.status == 200 and "admin:op-" in detail.text


async def test_acting_on_a_resolved_request_is_a_message_not_a_500(gateway_server, operator) -> None:
    request_id = await pairing_request(gateway_server, DeviceKey(), READ)
    first = await in_thread(operator.action, "pairingrequest", "reject", request_id)
    assert first.said("success"), first.messages
    for action in ("approve", "reject"):
        again = await in_thread(operator.action, "pairingrequest", action, request_id)
        assert again.status == 200
        assert any("already rejected" in m for m in again.said("error")), again.messages


async def test_admin_rejects_pending_device(gateway_server, client, operator) -> None:
    pairer = await client(PAIRING)
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    page = await in_thread(operator.action, "pairingrequest", "reject", request_id)
    assert any("rejected" in m for m in page.said("success")), page.messages
    resolved = await next_matching(pairer, "device.pair.resolved", lambda p: p["requestId"] == request_id)
    assert resolved["payload"]["decision"] == "rejected"
    assert await pairing_request(gateway_server, device, READ) != request_id, "still not paired: a new request"


async def test_pending_requests_are_listed_first(gateway_server, operator) -> None:
    resolved = await pairing_request(gateway_server, DeviceKey(), READ)
    await in_thread(operator.action, "pairingrequest", "reject", resolved)
    pending = await pairing_request(gateway_server, DeviceKey(), READ)  # newest, but make sure of order anyway
    listing = await in_thread(operator.open, "/admin/pairing/pairingrequest/")
    assert listing.text.index(pending) < listing.text.index(resolved)
    states = re.findall(r'<td class="field-state">(\w+)</td>', listing.text)
    assert "pending" in states and states.index("pending") < states.index("rejected"), states


# --- device tokens -------------------------------------------------------------------------------------

async def test_admin_revoke_closes_the_devices_live_connection(gateway_server, client, operator) -> None:
    device = DeviceKey()
    admitted = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert admitted.ok, admitted.response  # local: paired on the spot
    device_token = admitted.hello["auth"]["deviceToken"]
    live = admitted.client()
    await still_usable(live)
    bystander = await client(READ)

    page = await in_thread(operator.action, "device", "revoke_tokens", device.id)
    assert any("operator token revoked" in m for m in page.said("success")), page.messages

    await asyncio.wait_for(live.ws.wait_closed(), 10)
    assert live.ws.close_code == 1008
    await live.close()
    await still_usable(bystander)

    refused = await device_handshake(gateway_server.url, device, token=device_token, scopes=READ)
    assert (refused.error["code"], refused.error["reason"]) == (401, "DEVICE_TOKEN_REVOKED")
    await frames_until_close(refused.ws)

    again = await in_thread(operator.action, "device", "revoke_tokens", device.id)
    assert any("no live token" in m for m in again.said("warning")), again.messages


async def test_admin_rotate_shows_the_new_token_once(gateway_server, operator) -> None:
    device = DeviceKey()
    first = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert first.ok, first.response
    old_token = first.hello["auth"]["deviceToken"]
    await first.ws.close()

    page = await in_thread(operator.action, "device", "rotate_tokens", device.id)
    assert page.status == 200
    shown = [m for m in page.said("warning") if "role operator" in m]
    assert len(shown) == 1, page.messages
    new_token = shown[0].rsplit(": ", 1)[1]
    assert len(new_token) >= 32 and new_token != old_token
    assert "only place the token is ever shown" in page.text

    # Never again: not in the list, not on the device's page, not left in a cookie.
    for path in ("/admin/pairing/device/", f"/admin/pairing/device/{device.id}/change/"):
        later = await in_thread(operator.open, path)
        assert later.status == 200 and new_token not in later.text
    assert all(new_token not in c.value for c in operator.cookies)

    fresh = await device_handshake(gateway_server.url, device, token=new_token, scopes=READ)
    assert fresh.ok, fresh.response
    await fresh.ws.close()
    stale = await device_handshake(gateway_server.url, device, token=old_token, scopes=READ)
    assert stale.error["code"] == 401, "the old token stops working after rotate"
    await frames_until_close(stale.ws)


# --- nodes ---------------------------------------------------------------------------------------------

async def test_admin_approves_node_pairing_and_renames_the_node(gateway_server, client, operator) -> None:
    pairer = await client(PAIRING)
    node_id = f"node-{secrets.token_hex(4)}"
    asked = await pairer.call("node.pair.request", {"nodeId": node_id, "displayName": "Kitchen", "platform": "linux"})
    request_id = asked["request"]["requestId"]

    page = await in_thread(operator.action, "nodepairingrequest", "approve", request_id)
    token_lines = [m for m in page.said("warning") if node_id in m]
    assert len(token_lines) == 1, page.messages
    token = token_lines[0].rsplit("node token: ", 1)[1]
    resolved = await next_matching(pairer, "node.pair.resolved", lambda p: p["requestId"] == request_id)
    assert resolved["payload"]["decision"] == "approved"
    assert (await pairer.call("node.pair.verify", {"nodeId": node_id, "token": token}))["ok"] is True

    nodes = await in_thread(operator.open, "/admin/pairing/node/")
    assert node_id in nodes.text and token not in nodes.text
    change = f"/admin/pairing/node/{node_id}/change/"
    form = await in_thread(operator.open, change)
    assert form.status == 200 and "token_hash" not in form.text and token not in form.text
    saved = await in_thread(operator.open, change, {"display_name": "  Pantry  ", "_save": "Save"})
    assert saved.status == 200 and saved.url.endswith("/admin/pairing/node/"), saved.text[:2000]
    listing = await pairer.call("node.pair.list")
    assert next(n for n in listing["paired"] if n["nodeId"] == node_id)["displayName"] == "Pantry"

    blank = await in_thread(operator.open, change, {"display_name": "   ", "_save": "Save"})
    assert blank.status == 200 and "A display name is required" in blank.text

    again = await in_thread(operator.action, "nodepairingrequest", "reject", request_id)
    assert any("already approved" in m for m in again.said("error")), again.messages
    detail = await in_thread(operator.open, f"/admin/pairing/nodepairingrequest/{request_id}/change/")
    assert detail.status == 200 and token not in detail.text


# --- exec approvals ------------------------------------------------------------------------------------

async def test_admin_denies_a_pending_exec_approval(gateway_server, client, operator) -> None:
    requester = await client(APPROVALS)
    watcher = await client(APPROVALS)
    approval_id = f"adm-{secrets.token_hex(6)}"
    waiting = asyncio.create_task(requester.call("exec.approval.request", {
        "id": approval_id, "command": "rm -rf /tmp/scratch", "host": "gateway", "timeoutMs": 60_000}))
    await next_matching(watcher, "exec.approval.requested", lambda p: p["id"] == approval_id)

    listing = await in_thread(operator.open, "/admin/pairing/execapproval/")
    states = re.findall(r'<td class="field-state">([\w-]+)</td>', listing.text)
    assert states and states[0] == "pending", "undecided approvals are listed first"

    page = await in_thread(operator.action, "execapproval", "deny", approval_id)
    assert any("deny" in m for m in page.said("success")), page.messages

    decided = await asyncio.wait_for(waiting, 10)
    assert decided["id"] == approval_id and decided["decision"] == "deny"
    resolved = await next_matching(watcher, "exec.approval.resolved", lambda p: p["id"] == approval_id)
    assert resolved["payload"]["decision"] == "deny"
    assert resolved["payload"]["resolvedBy"].startswith("admin:")

    again = await in_thread(operator.action, "execapproval", "allow_once", approval_id)
    assert any("already resolved" in m for m in again.said("error")), again.messages
    detail = await in_thread(operator.open, f"/admin/pairing/execapproval/{approval_id}/change/")
    assert detail.status == 200 and "rm -rf /tmp/scratch" in detail.text
