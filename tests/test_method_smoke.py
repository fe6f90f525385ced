"""Every seed method, called with empty params and with an unknown key, answers without a 500,
without a "not implemented yet" placeholder (that list is empty), and without choking on the
unknown key (README D3: unknown keys are ignored everywhere).
Runs on a gateway of its own, so side effects of empty-params calls stay here."""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from gateway.client import GatewayClient
from gateway.protocol.registry import NODE, REGISTRY
from tests.support import ADMIN, GatewayServer, start_gateway

# Methods that may legitimately wait a long time when given nothing to wait for.
LONG_POLLS = {"agent.wait", "exec.approval.waitDecision", "exec.approval.request", "web.login.wait", "node.invoke",
              "wizard.next"}
UNKNOWN_KEY = "zzSurelyNotAParam"


@pytest.fixture(scope="module")
def own_server() -> Iterator[GatewayServer]:
    server = start_gateway()
    yield server
    server.stop()


def callable_methods(scope_filter) -> list[str]:
    return sorted(name for name, spec in REGISTRY.items() if scope_filter(spec.scope) and name not in LONG_POLLS)


async def test_no_method_answers_500_or_not_implemented(own_server: GatewayServer) -> None:
    admin = await GatewayClient.connect(own_server.url, token=own_server.token, scopes=ADMIN)
    node = await GatewayClient.connect(own_server.url, token=own_server.token, scopes=[], role="node")
    try:
        operator_methods = callable_methods(lambda s: s != NODE)
        node_methods = callable_methods(lambda s: s == NODE)
        calls = [(admin, m) for m in operator_methods] + [(node, m) for m in node_methods]
        for params in ({}, {UNKNOWN_KEY: 1}):
            frames = await asyncio.gather(*(conn.request(m, params, timeout=30) for conn, m in calls))
            for (_, name), frame in zip(calls, frames):
                error = frame.get("error") or {}
                assert error.get("code") != 500, f"{name}({params}) -> {error}"
                assert "not implemented" not in str(error.get("message", "")), f"{name} is a placeholder: {error}"
                assert UNKNOWN_KEY not in str(error.get("message", "")), f"{name} rejected an unknown key: {error}"
        assert (await admin.call("health"))["ok"] is True
    finally:
        await admin.close()
        await node.close()
