"""Gateway set-ups other than the default: password auth instead of a token, and the v3
dialect on the root path (README D1, D4; auth-and-pairing.md §1.1)."""

from __future__ import annotations

from gateway.client import GatewayClient
from tests.support import READ, connect_params, frames_until_close, handshake, open_socket


async def test_password_mode_admits_the_password_and_refuses_the_token(gateway_server_factory) -> None:
    server = gateway_server_factory(ANIMA_GATEWAY_PASSWORD="correct horse battery staple")
    conn = await GatewayClient.connect(server.url, password="correct horse battery staple", scopes=READ)
    try:
        assert conn.hello["snapshot"]["authMode"] == "password"
        assert (await conn.call("health"))["ok"] is True
    finally:
        await conn.close()

    params = connect_params(scopes=READ)
    params["auth"] = {"password": "wrong"}
    ws, _, response = await handshake(server.url, params)
    assert (response["error"]["code"], response["error"]["reason"]) == (401, "PASSWORD_MISMATCH")
    assert response["error"]["message"].startswith("unauthorized: gateway password mismatch")
    await frames_until_close(ws)
    assert ws.close_code == 1008

    ws, _, response = await handshake(server.url, connect_params(token=server.token, scopes=READ))
    assert (response["error"]["code"], response["error"]["reason"]) == (401, "PASSWORD_MISSING"), \
        "the password wins when both are configured"
    await frames_until_close(ws)


async def test_root_dialect_v3_makes_every_path_speak_v3(gateway_server_factory) -> None:
    server = gateway_server_factory(ANIMA_GATEWAY_ROOT_DIALECT="v3")
    for path in ("", "/", "/gateway", "/v3"):
        ws, challenge = await open_socket(server.url + path)
        await ws.close()
        assert challenge["type"] == "event", path
    conn = await GatewayClient.connect(server.url + "/v3", token=server.token, scopes=READ)
    try:
        error = (await conn.request("no.such.method"))["error"]
        assert (error["code"], error["details"]["code"]) == ("INVALID_REQUEST", "NOT_FOUND")
    finally:
        await conn.close()
