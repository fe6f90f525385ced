"""send idempotency across gateway processes (operations.md §5, README D7): two gateways on one
PostgreSQL database and one Redis, the same idempotencyKey sent to both at once → one delivery
(one POST to the webhook receiver in this test) and the same answer from both."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Iterator

import pytest

from gateway.client import GatewayClient
from tests.multiproc_util import Cluster, running_cluster
from tests.test_outbound import Receiver

pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from running_cluster(request)


def outbound_rows(cluster: Cluster, key: str) -> int:
    import psycopg

    with psycopg.connect(cluster.database_url.replace("postgres://", "postgresql://")) as conn:
        row = conn.execute("SELECT count(*) FROM gateway_outboundmessage WHERE idempotency_key = %s", (key,)).fetchone()
    return row[0]


async def test_one_key_sent_to_two_gateways_at_once_delivers_once(cluster: Cluster) -> None:
    a, b = cluster.gateways
    receiver = Receiver([200])
    clients: list[GatewayClient] = []
    try:
        admin_a = await GatewayClient.connect(a.url, token=cluster.token, scopes=["operator.admin"])
        writer_a = await GatewayClient.connect(a.url, token=cluster.token, scopes=["operator.write"])
        writer_b = await GatewayClient.connect(b.url, token=cluster.token, scopes=["operator.write"])
        clients += [admin_a, writer_a, writer_b]
        base = (await admin_a.call("config.get"))["hash"]
        await admin_a.call("config.set", {"path": "channels.webhook", "value": {"url": receiver.url, "retries": 0},
                                          "baseHash": base})
        for _ in range(100):  # the config reaches B through the channel layer
            status = await writer_b.call("channels.status")
            if status["channels"]["webhook"]["configured"]:
                break
            await asyncio.sleep(0.1)
        for channel in ("webhook", "log"):
            params: dict[str, Any] = {"channel": channel, "to": "both", "message": "once",
                                      "idempotencyKey": str(uuid.uuid4())}
            answers = await asyncio.gather(*(w.call("send", params) for w in (writer_a, writer_b, writer_a, writer_b)))
            assert all(ans == answers[0] for ans in answers), answers
            assert answers[0]["runId"] == params["idempotencyKey"] and answers[0]["channel"] == channel
            assert outbound_rows(cluster, params["idempotencyKey"]) == 1
        assert len(receiver.received) == 1, receiver.received
    finally:
        for client in clients:
            await client.close()
        receiver.close()
