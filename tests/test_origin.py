"""Browser clients (Control UI, webchat) must come from an allowed Origin (protocol.md §2.4
step 4, auth-and-pairing.md §1.7, README D2: origin not allowed -> 403 FORBIDDEN, close 1008)."""

from __future__ import annotations

import pytest

from tests.support import READ, connect_params, frames_until_close, handshake


@pytest.mark.parametrize(("client_id", "mode"), [("anima-control-ui", "ui"), ("webchat-ui", "webchat"),
                                                 ("control-ui", "web"), ("my-web-app", "webchat")])
async def test_browser_client_from_the_gateway_host_is_admitted(gateway_server, client_id: str, mode: str) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(
        token=gateway_server.token, scopes=READ, client_id=client_id, mode=mode),
        headers={"Origin": f"http://127.0.0.1:{gateway_server.port}"})
    await ws.close()
    assert response["ok"], response


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
async def test_browser_client_from_a_foreign_origin_is_refused(gateway_server, origin: str) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(
        token=gateway_server.token, scopes=READ, client_id="anima-control-ui", mode="ui"),
        headers={"Origin": origin})
    if response.get("ok"):
        await ws.close()
    assert not response.get("ok"), "admitted from a foreign origin"
    assert (response["error"]["code"], response["error"]["reason"]) == (403, "FORBIDDEN")
    await frames_until_close(ws)
    assert ws.close_code == 1008


async def test_non_browser_clients_are_not_origin_checked(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(token=gateway_server.token, scopes=READ),
                                      headers={"Origin": "https://elsewhere.example"})
    await ws.close()
    assert response["ok"]
