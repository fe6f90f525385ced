"""The environment gives gateway.auth.* until the config sets it; from then on the config wins
(README Clarifications), live on the running gateway."""

from __future__ import annotations

import pytest

from gateway.client import GatewayClient, RpcError
from tests.support import ADMIN


async def test_config_token_replaces_the_environment_token(fresh_gateway_server) -> None:
    server = fresh_gateway_server
    admin = await GatewayClient.connect(server.url, token=server.token, scopes=ADMIN)
    try:
        snap = await admin.call("config.get")
        await admin.call("config.set", {"path": "gateway.auth.token", "value": "from-config-0123456789",
                                        "baseHash": snap["hash"]})
        with pytest.raises(RpcError) as refused:
            await GatewayClient.connect(server.url, token=server.token, scopes=["operator.read"])
        assert refused.value.code == 401
        fresh = await GatewayClient.connect(server.url, token="from-config-0123456789", scopes=["operator.read"])
        await fresh.close()
        got = await admin.call("config.get")
        assert "from-config-0123456789" not in str(got), "the token is redacted in config.get"
    finally:
        await admin.close()
