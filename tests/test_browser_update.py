"""browser.request (operations.md §10) is forwarded as browser.proxy to a connected browser-capable
node and is 503 without one; update.run (§11) is always an honest 503: the package manager updates
this gateway."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from gateway.client import GatewayClient
from tests.support import ADMIN, WRITE, call_error


def name() -> str:
    return f"browser-node-{uuid.uuid4().hex[:8]}"


async def browser_node(client: Any, node_name: str, commands: list[str] | None = None) -> GatewayClient:
    return await client([], role="node", client_id=node_name, mode="node",
                        extra={"commands": ["browser.proxy"] if commands is None else commands, "caps": ["browser"]})


@asynccontextmanager
async def config_set(admin: GatewayClient, path: str, value: Any) -> AsyncIterator[None]:
    base = (await admin.call("config.get"))["hash"]
    await admin.call("config.set", {"path": path, "value": value, "baseHash": base})
    try:
        yield
    finally:
        base = (await admin.call("config.get"))["hash"]
        await admin.call("config.set", {"path": path, "value": None, "baseHash": base})


async def answer_proxy(node: GatewayClient, result: Any) -> dict:
    request = (await node.next_event("node.invoke.request"))["payload"]
    await node.call("node.invoke.result", {"id": request["id"], "nodeId": request["nodeId"], "ok": True,
                                           "payload": {"result": result}})
    return request


async def test_method_and_path_are_checked(client: Any) -> None:
    writer = await client(WRITE)
    for params, message in (({"method": "GET"}, "method and path are required"),
                            ({"path": "/"}, "method and path are required"),
                            ({"method": "PUT", "path": "/"}, "method must be GET, POST, or DELETE")):
        err = await call_error(writer, "browser.request", params)
        assert (err["code"], err["message"]) == (400, message)
    err = await call_error(writer, "browser.request", {"method": "GET", "path": "/", "timeoutMs": 0})
    assert err["code"] == 400 and "/timeoutMs" in err["message"]


async def test_without_a_browser_node_it_is_503(client: Any) -> None:
    writer = await client(WRITE)
    err = await call_error(writer, "browser.request", {"method": "GET", "path": "/"})
    assert err["code"] == 503 and err["message"].startswith("No connected browser-capable nodes.")


async def test_browser_disabled_in_config_is_503(client: Any) -> None:
    admin = await client(ADMIN)
    async with config_set(admin, "browser.enabled", False):
        err = await call_error(admin, "browser.request", {"method": "POST", "path": "/start"})
        assert err["code"] == 503 and err["message"].startswith("browser control is disabled")


async def test_the_request_is_forwarded_to_the_browser_node(client: Any) -> None:
    writer = await client(WRITE)
    node = await browser_node(client, name())
    call = asyncio.ensure_future(writer.call("browser.request", {
        "method": "post", "path": "/tabs/open", "body": {"url": "https://example.org"}, "profile": "work"}))
    request = await answer_proxy(node, {"ok": True, "targetId": "t1"})
    assert request["command"] == "browser.proxy"
    assert '"/tabs/open"' in request["paramsJSON"] and '"POST"' in request["paramsJSON"]
    assert '"profile":"work"' in request["paramsJSON"].replace(" ", "")
    assert await asyncio.wait_for(call, 10) == {"ok": True, "targetId": "t1"}


async def test_routing_policy_pinned_ambiguous_and_off(client: Any) -> None:
    admin = await client(ADMIN)
    first, second = name(), name()
    await browser_node(client, first)
    await browser_node(client, second)
    err = await call_error(admin, "browser.request", {"method": "GET", "path": "/"})
    assert err["code"] == 503 and "Several browser-capable nodes" in err["message"]
    async with config_set(admin, "gateway.nodes.browser", {"node": "not-here"}):
        err = await call_error(admin, "browser.request", {"method": "GET", "path": "/"})
        assert (err["code"], err["message"]) == (503, "Configured browser node not connected: not-here")
    async with config_set(admin, "gateway.nodes.browser", {"mode": "off"}):
        err = await call_error(admin, "browser.request", {"method": "GET", "path": "/"})
        assert err["code"] == 503 and err["message"].startswith("No connected browser-capable nodes.")


async def test_a_node_that_did_not_declare_browser_proxy_is_refused(client: Any) -> None:
    writer = await client(WRITE)
    await browser_node(client, name(), commands=["system.which"])  # cap "browser" only
    err = await call_error(writer, "browser.request", {"method": "GET", "path": "/"})
    assert (err["code"], err["message"]) == (400, "node command not allowed")


async def test_update_run_is_503_and_checks_params_and_scope(client: Any) -> None:
    admin, writer = await client(ADMIN), await client(WRITE)
    err = await call_error(admin, "update.run", {"restartDelayMs": -1})
    assert err["code"] == 400 and "/restartDelayMs" in err["message"]
    err = await call_error(admin, "update.run", {"note": "please"})
    assert err["code"] == 503 and err["message"].startswith("update unavailable: ")
    err = await call_error(writer, "update.run", {})
    assert err["code"] == 403
    assert (await admin.call("health"))["ok"] is True, "no restart"
