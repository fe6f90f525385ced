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


async def test_browser_client_without_an_origin_is_refused(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(
        token=gateway_server.token, scopes=READ, client_id="webchat-ui", mode="webchat"))
    assert (response["error"]["code"], response["error"]["reason"]) == (403, "FORBIDDEN")
    await frames_until_close(ws)
    assert ws.close_code == 1008


async def test_a_dns_name_that_starts_with_127_is_not_a_loopback_origin(gateway_server) -> None:
    ws, _, response = await handshake(gateway_server.url, connect_params(
        token=gateway_server.token, scopes=READ, client_id="anima-control-ui", mode="ui"),
        headers={"Origin": "http://127.0.0.1.evil.example"})
    if response.get("ok"):
        await ws.close()
    assert not response.get("ok"), "a page on 127.0.0.1.evil.example was admitted as a loopback origin"
    await frames_until_close(ws)


@pytest.mark.django_db(transaction=True)
async def test_configured_allowed_origins_admit_a_foreign_ui(inprocess_app, settings) -> None:
    from channels.testing import WebsocketCommunicator

    application, _ = inprocess_app
    settings.ANIMA_CONTROL_UI_ALLOWED_ORIGINS = ["https://UI.example.com/"]
    outcomes = {}
    for origin in ("https://ui.example.com", "https://other.example.com"):
        comm = WebsocketCommunicator(application, "/", headers=[(b"host", b"gateway.internal:18789"),
                                                                 (b"origin", origin.encode())])
        comm.scope["client"] = ("10.0.0.5", 40000)
        assert (await comm.connect(timeout=5))[0]
        await comm.receive_json_from(timeout=5)  # challenge
        await comm.send_json_to({"type": "req", "id": "c", "method": "connect", "params": connect_params(
            token="inproc-token", scopes=READ, client_id="anima-control-ui", mode="ui")})
        frame = await comm.receive_json_from(timeout=5)
        outcomes[origin] = frame["ok"] or frame["error"]["reason"]
        await comm.disconnect()
    assert outcomes == {"https://ui.example.com": True, "https://other.example.com": "FORBIDDEN"}
