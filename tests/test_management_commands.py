"""`manage.py devices …` and `manage.py nodes …` run as an operator runs them: a separate process
against the database of a running gateway. They call the same services as the RPC methods.

In the embedded default (no REDIS_URL) their events cannot reach the gateway (each process has
its own in-memory channel layer) and the command says so; with REDIS_URL they do, which the last
tests check against a gateway on Redis."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from typing import Any

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

REDIS_URL = "redis://127.0.0.1:6379/0"


def manage(server: GatewayServer, *args: str) -> subprocess.CompletedProcess:
    """Run a management command with the gateway's own environment (same database, same layer)."""
    return subprocess.run([PYTHON, "manage.py", *args], cwd=PROJECT_DIR, env=server.env, capture_output=True,
                          text=True, timeout=60, check=False)


async def run(server: GatewayServer, *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(manage, server, *args)


async def next_matching(client: GatewayClient, event: str, predicate: Any, timeout: float = 10) -> dict:
    async def wait() -> dict:
        while True:
            frame = await client.next_event(event, timeout=timeout)
            if predicate(frame["payload"]):
                return frame
    return await asyncio.wait_for(wait(), timeout)


async def pairing_request(server: GatewayServer, device: DeviceKey, scopes: list[str]) -> str:
    attempt = await device_handshake(server.url, device, token=server.token, scopes=scopes, headers=REMOTE)
    assert (attempt.error.get("code"), attempt.error.get("reason")) == (403, "NOT_PAIRED"), attempt.response
    await frames_until_close(attempt.ws)
    return attempt.error["details"]["requestId"]


# --- devices (embedded default) --------------------------------------------------------------------

async def test_devices_list_and_approve(gateway_server) -> None:
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)

    table = await run(gateway_server, "devices", "list")
    assert table.returncode == 0, table.stderr
    assert "Pending pairing requests" in table.stdout and "Paired devices" in table.stdout
    assert request_id in table.stdout and device.id in table.stdout
    listing = json.loads((await run(gateway_server, "devices", "list", "--json")).stdout)
    assert request_id in [p["requestId"] for p in listing["pending"]]

    approved = await run(gateway_server, "devices", "approve", request_id)
    assert approved.returncode == 0, approved.stderr
    assert device.id in approved.stdout
    assert "REDIS_URL is not set" in approved.stderr, "the command says its event cannot reach the gateway"

    admitted = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ,
                                      headers=REMOTE)
    assert admitted.ok, admitted.response
    assert admitted.hello["auth"]["deviceToken"]
    await admitted.ws.close()

    listing = json.loads((await run(gateway_server, "devices", "list", "--json")).stdout)
    paired = next(d for d in listing["paired"] if d["deviceId"] == device.id)
    assert paired["scopes"] == READ
    assert request_id not in [p["requestId"] for p in listing["pending"]]
    assert admitted.hello["auth"]["deviceToken"] not in json.dumps(listing), "tokens are never listed"


async def test_devices_reject_and_a_second_decision_fails(gateway_server, client) -> None:
    device = DeviceKey()
    request_id = await pairing_request(gateway_server, device, READ)
    rejected = await run(gateway_server, "devices", "reject", request_id)
    assert rejected.returncode == 0, rejected.stderr
    again = await run(gateway_server, "devices", "approve", request_id)
    assert again.returncode != 0
    assert "pairing request already rejected" in again.stderr
    pairer = await client(PAIRING)
    listing = await pairer.call("device.pair.list")
    assert device.id not in [d["deviceId"] for d in listing["paired"]]


@pytest.mark.parametrize("args, message", [
    (("devices", "approve", "00000000-0000-0000-0000-000000000000"), "unknown requestId"),
    (("devices", "reject", "not-a-uuid"), "unknown requestId"),
    (("devices", "revoke", "0" * 64), "unknown deviceId/role"),
    (("devices", "rotate", "0" * 64), "unknown deviceId/role"),
    (("nodes", "approve", "00000000-0000-0000-0000-000000000000"), "unknown requestId"),
    (("nodes", "rename", "no-such-node", "Name"), "unknown nodeId"),
])
async def test_errors_exit_non_zero_with_the_services_message(gateway_server, args, message) -> None:
    done = await run(gateway_server, *args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"CommandError: {message}" in done.stderr
    assert "Traceback" not in done.stderr


async def test_devices_rotate_prints_a_token_once_and_revoke_refuses_it(gateway_server) -> None:
    device = DeviceKey()
    first = await device_handshake(gateway_server.url, device, token=gateway_server.token, scopes=READ)
    assert first.ok, first.response  # local: paired on the spot
    await first.ws.close()

    rotated = await run(gateway_server, "devices", "rotate", device.id)
    assert rotated.returncode == 0, rotated.stderr
    token = rotated.stdout.strip()
    assert len(token) >= 32 and "\n" not in token and "shown only now" in rotated.stderr
    assert token not in (await run(gateway_server, "devices", "list", "--json")).stdout

    fresh = await device_handshake(gateway_server.url, device, token=token, scopes=READ)
    assert fresh.ok, fresh.response
    await fresh.ws.close()

    widened = await run(gateway_server, "devices", "rotate", device.id, "--scopes", "operator.admin")
    assert widened.returncode == 1 and "beyond the device's approval" in widened.stderr

    revoked = await run(gateway_server, "devices", "revoke", device.id, "--role", "operator")
    assert revoked.returncode == 0, revoked.stderr
    assert "live connections were not closed" in revoked.stderr, "honest about the in-memory channel layer"
    refused = await device_handshake(gateway_server.url, device, token=token, scopes=READ)
    assert (refused.error["code"], refused.error["reason"]) == (401, "DEVICE_TOKEN_REVOKED")
    await frames_until_close(refused.ws)


# --- nodes -------------------------------------------------------------------------------------------------

async def test_nodes_list_approve_rename_reject(gateway_server, client) -> None:
    pairer = await client(PAIRING)
    node_id = f"cli-node-{secrets.token_hex(4)}"
    asked = await pairer.call("node.pair.request", {"nodeId": node_id, "displayName": "Garage", "platform": "linux"})
    request_id = asked["request"]["requestId"]

    table = await run(gateway_server, "nodes", "list")
    assert table.returncode == 0 and request_id in table.stdout and node_id in table.stdout

    approved = await run(gateway_server, "nodes", "approve", request_id)
    assert approved.returncode == 0, approved.stderr
    token = approved.stdout.strip()
    assert (await pairer.call("node.pair.verify", {"nodeId": node_id, "token": token}))["ok"] is True
    listing = json.loads((await run(gateway_server, "nodes", "list", "--json")).stdout)
    assert node_id in [n["nodeId"] for n in listing["paired"]] and token not in json.dumps(listing)

    renamed = await run(gateway_server, "nodes", "rename", node_id, "Shed")
    assert renamed.returncode == 0, renamed.stderr
    listing = await pairer.call("node.pair.list")
    assert next(n for n in listing["paired"] if n["nodeId"] == node_id)["displayName"] == "Shed"

    blank = await run(gateway_server, "nodes", "rename", node_id, "  ")
    assert blank.returncode == 1 and "displayName required" in blank.stderr
    again = await run(gateway_server, "nodes", "reject", request_id)
    assert again.returncode == 1 and "already approved" in again.stderr


# --- with REDIS_URL the command's events reach the running gateway ----------------------------------------

def redis_missing() -> str | None:
    import redis

    try:
        conn = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
        conn.ping()
        conn.close()
    except (redis.RedisError, OSError) as exc:
        return f"Redis at {REDIS_URL} ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture
def redis_gateway(gateway_server_factory) -> GatewayServer:
    """A gateway whose channel layer is Redis (own key prefix); its env is what `manage` uses."""
    missing = redis_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"needs {missing}; CI provides it", pytrace=False)
        pytest.skip(f"needs {missing}")
    return gateway_server_factory(REDIS_URL=REDIS_URL, ANIMA_REDIS_PREFIX=f"anima-cli-{secrets.token_hex(4)}")


async def test_with_redis_cli_approve_reaches_connected_clients(redis_gateway, client) -> None:
    pairer = await client(PAIRING, server=redis_gateway)
    device = DeviceKey()
    request_id = await pairing_request(redis_gateway, device, READ)
    await next_matching(pairer, "device.pair.requested", lambda p: p["requestId"] == request_id)

    approved = await run(redis_gateway, "devices", "approve", request_id)
    assert approved.returncode == 0, approved.stderr
    assert "REDIS_URL is not set" not in approved.stderr
    resolved = await next_matching(pairer, "device.pair.resolved", lambda p: p["requestId"] == request_id)
    assert resolved["payload"]["decision"] == "approved"
    assert resolved["payload"]["deviceId"] == device.id


async def test_with_redis_cli_revoke_closes_the_live_connection(redis_gateway, client) -> None:
    device = DeviceKey()
    admitted = await device_handshake(redis_gateway.url, device, token=redis_gateway.token, scopes=READ)
    assert admitted.ok, admitted.response
    live = admitted.client()
    await still_usable(live)

    revoked = await run(redis_gateway, "devices", "revoke", device.id)
    assert revoked.returncode == 0, revoked.stderr
    await asyncio.wait_for(live.ws.wait_closed(), 10)
    assert live.ws.close_code == 1008
    await live.close()
