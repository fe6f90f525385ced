"""An independent client of the OpenClaw v3 protocol against our /v3 endpoint (README D1).

`openclaw-sdk` (PyPI, MIT, written by others; pinned in requirements-test.txt) reads its device
identity from an OpenClaw state directory, `~/.openclaw/identity/device.json` (PEM Ed25519 keys)
and `~/.openclaw/identity/device-auth.json` (the operator device token), signs the v2 device
payload `v2|deviceId|cli|cli|role|scopes|signedAtMs|token|nonce` over the challenge nonce, and
sends `connect` with protocol 3..3, client id/mode `cli`, and `auth.token` = the device token.
It never sends the gateway's shared token.

The tests give the SDK a HOME of their own (it has no other option for its state directory),
obtain the device token from this gateway as a user would (a first local connect with the shared
token auto-pairs the device and returns hello-ok.auth.deviceToken once), then let the unmodified
SDK connect with the device token alone and call methods through its public API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from openclaw_sdk import OpenClawClient
from openclaw_sdk.core.exceptions import GatewayError as SdkGatewayError
from openclaw_sdk.gateway import protocol as sdk_protocol

from tests.support import DeviceKey, device_handshake

SDK_SCOPES = ["operator.read", "operator.pairing"]


def write_openclaw_state(home: Path, device: DeviceKey, token: str, role: str, scopes: list[str]) -> Path:
    """The OpenClaw state directory the SDK reads: identity/device.json and identity/device-auth.json."""
    private_key = Ed25519PrivateKey.from_private_bytes(bytes(device.signing_key))  # the same key pair
    public_key = private_key.public_key()
    assert public_key.public_bytes(Encoding.Raw, PublicFormat.Raw) == device.raw_public_key
    identity_dir = home / ".openclaw" / "identity"
    identity_dir.mkdir(parents=True)
    now = int(time.time() * 1000)
    (identity_dir / "device.json").write_text(json.dumps({
        "version": 1,
        "deviceId": device.id,
        "publicKeyPem": public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(),
        "privateKeyPem": private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode(),
        "createdAtMs": now,
    }))
    (identity_dir / "device-auth.json").write_text(json.dumps({
        "version": 1,
        "deviceId": device.id,
        "tokens": {role: {"token": token, "role": role, "scopes": list(scopes), "updatedAtMs": now}},
    }))
    return identity_dir


@pytest.fixture
def sdk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME for the SDK (Path.home() follows $HOME), and nothing else that it would read from
    the environment: no OPENCLAW_* settings, no proxy for the loopback socket."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_URL", "OPENCLAW_GATEWAY_WS_URL", "OPENCLAW_API_KEY",
                 "OPENCLAW_MODE", "http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert Path.home() == home
    return home


@pytest.fixture
def connect_responses(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The gateway's answers to the SDK's `connect` (the SDK itself only logs a failed connect and
    then reports itself connected, so the tests look at the frame)."""
    responses: list[dict[str, Any]] = []
    original = sdk_protocol.ProtocolGateway._route_message

    async def recording(self: Any, msg: dict[str, Any]) -> None:
        if msg.get("type") == "res" and self._connect_req_id is not None and msg.get("id") == self._connect_req_id:
            responses.append(msg)
        await original(self, msg)

    monkeypatch.setattr(sdk_protocol.ProtocolGateway, "_route_message", recording)
    return responses


async def issue_device_token(url: str, shared_token: str, device: DeviceKey, scopes: list[str]) -> dict[str, Any]:
    """First connect of a local device, as the OpenClaw CLI makes it: shared token + signed identity;
    the device is paired silently and hello-ok.auth carries its device token (once)."""
    first = await device_handshake(url, device, token=shared_token, scopes=scopes, client_id="cli", mode="cli")
    assert first.ok, first.response
    await first.ws.close()
    auth = first.hello["auth"]
    assert auth["role"] == "operator" and sorted(auth["scopes"]) == sorted(scopes)
    assert isinstance(auth.get("deviceToken"), str) and auth["deviceToken"] != shared_token
    return auth


async def test_sdk_connects_with_device_token_and_calls_methods(gateway_server, sdk_home, connect_responses) -> None:
    device = DeviceKey()
    auth = await issue_device_token(gateway_server.v3_url, gateway_server.token, device, SDK_SCOPES)
    write_openclaw_state(sdk_home, device, auth["deviceToken"], auth["role"], auth["scopes"])
    # the SDK reads what was just written, from the test's HOME
    assert sdk_protocol._load_device_identity()["deviceId"] == device.id
    assert sdk_protocol._load_device_auth()["tokens"]["operator"]["token"] == auth["deviceToken"]
    assert not (sdk_home / ".openclaw" / "openclaw.json").exists()  # no shared token anywhere for it

    client = await OpenClawClient.connect(gateway_ws_url=gateway_server.v3_url)
    try:
        assert len(connect_responses) == 1
        hello = connect_responses[0]
        assert hello["ok"] is True, hello
        payload = hello["payload"]
        assert payload["type"] == "hello-ok" and payload["protocol"] == 3
        assert payload["auth"]["role"] == "operator" and sorted(payload["auth"]["scopes"]) == sorted(SDK_SCOPES)
        assert "deviceToken" not in payload["auth"], "a device token is shown only when it is issued"
        methods = payload["features"]["methods"]
        for name in ("health", "system-presence", "node.list", "device.pair.list"):
            assert name in methods

        gw = client.gateway
        health = await gw.call("health", {})
        assert health["ok"] is True

        status = await client.health()  # the SDK's own health check: a system-presence call
        assert status.healthy is True, status.details

        presence = await client.nodes.system_presence()
        entries = presence.get("data", presence)  # the SDK wraps a list payload as {"data": [...]}
        assert isinstance(entries, list)

        nodes = await client.nodes.list()
        assert isinstance(nodes, list)

        listing = await client.devices.list_paired()
        paired = next(d for d in listing["paired"] if d["deviceId"] == device.id)
        assert sorted(paired["scopes"]) == sorted(SDK_SCOPES)
        assert auth["deviceToken"] not in json.dumps(listing), "device.pair.list never shows token strings"

        # the connection holds the token's scopes and no more
        with pytest.raises(SdkGatewayError) as refused:
            await gw.sessions_delete("main")
        assert "missing scope: operator.admin" in str(refused.value)
        assert (await gw.call("health", {}))["ok"] is True  # still usable after a refused call
    finally:
        await client.close()


async def test_sdk_with_a_wrong_device_token_is_refused(fresh_gateway_server, sdk_home, connect_responses) -> None:
    device = DeviceKey()
    auth = await issue_device_token(fresh_gateway_server.v3_url, fresh_gateway_server.token, device, SDK_SCOPES)
    write_openclaw_state(sdk_home, device, auth["deviceToken"][:-4] + "xxxx", auth["role"], auth["scopes"])

    client = await OpenClawClient.connect(gateway_ws_url=fresh_gateway_server.v3_url)
    try:
        assert len(connect_responses) == 1
        refused = connect_responses[0]
        assert refused["ok"] is False, refused
        assert "device token mismatch" in refused["error"]["message"]
        with pytest.raises(SdkGatewayError):
            await client.gateway.call("health", {}, timeout=5)
    finally:
        await client.close()
