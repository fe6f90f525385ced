"""config.patch across two gateway processes on one PostgreSQL database and one Redis (README
D7, D13; operations.md §2.3 step 8, §15.2): two patches with the same baseHash, sent at once to
gateway A and gateway B, give exactly one success and one 409 CONFLICT, and the winner's value
is what both processes then serve: in config.get (the database) and in what the runtime reads
(each process's live copy, seen through agent.identity.get's assistant name).

The same cluster checks the other operations state that must be shared (README D7, D8): one
onboarding wizard across processes (started on A, a second start on B is 409, B answers A's
step), and two concurrent agents.create of one name give one agent and one 409.

Needs PostgreSQL and Redis; skipped without them except in CI (as tests/test_multiprocess.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import AsyncIterator, Iterator

import pytest

from gateway.client import GatewayClient, RpcError
from tests.multiproc_util import Cluster
from tests.multiproc_util import running_cluster

pytestmark = pytest.mark.multiprocess

ADMIN = ["operator.admin", "operator.read", "operator.write"]


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from running_cluster(request)


@pytest.fixture
async def admins(cluster: Cluster) -> AsyncIterator[tuple[GatewayClient, GatewayClient]]:
    a, b = cluster.gateways
    ca = await GatewayClient.connect(a.url, token=cluster.token, scopes=ADMIN)
    cb = await GatewayClient.connect(b.url, token=cluster.token, scopes=ADMIN)
    yield ca, cb
    await ca.close()
    await cb.close()


async def _outcome(client: GatewayClient, name: str, base_hash: str) -> dict | RpcError:
    try:
        return await client.call("config.patch", {"raw": json.dumps({"ui": {"assistant": {"name": name}}}),
                                                  "baseHash": base_hash}, timeout=30)
    except RpcError as exc:
        return exc


async def _stored_name(client: GatewayClient) -> tuple[str | None, str]:
    snap = await client.call("config.get", {})
    return ((snap["config"].get("ui") or {}).get("assistant") or {}).get("name"), snap["hash"]


async def test_concurrent_patches_with_one_base_hash_one_wins_on_both_processes(admins) -> None:
    a, b = admins
    first = await a.call("config.get", {})
    if not first["exists"]:  # the very first write needs no baseHash
        await a.call("config.set", {"raw": json.dumps({"ui": {"assistant": {"name": "Before"}}})})
    for round_no in range(3):  # several rounds: the race must be decided every time
        base = (await a.call("config.get", {}))["hash"]
        colors = {"A": f"Anima A{round_no}", "B": f"Anima B{round_no}"}
        res_a, res_b = await asyncio.gather(_outcome(a, colors["A"], base), _outcome(b, colors["B"], base))
        results = {"A": res_a, "B": res_b}
        winners = [name for name, res in results.items() if isinstance(res, dict)]
        losers = [name for name, res in results.items() if isinstance(res, RpcError)]
        assert len(winners) == 1 and len(losers) == 1, results
        loser = results[losers[0]]
        assert loser.code == 409 and loser.error.get("reason") == "CONFLICT", loser.error
        assert results[winners[0]]["ok"] is True
        expected = colors[winners[0]]
        new_hash = results[winners[0]]["hash"]
        # both processes serve the winner's document (config.get reads the database) ...
        for client in (a, b):
            assert await _stored_name(client) == (expected, new_hash)
        # ... and each process's live copy (what the runtime reads) follows within a moment
        for client in (a, b):
            deadline = time.monotonic() + 10
            while True:
                identity = await client.call("agent.identity.get", {})
                if identity.get("name") == expected:
                    break
                assert time.monotonic() < deadline, identity
                await asyncio.sleep(0.1)


async def test_one_wizard_across_processes_answered_from_either(admins) -> None:
    a, b = admins
    started = await a.call("wizard.start", {})
    try:
        with pytest.raises(RpcError) as caught:
            await b.call("wizard.start", {})
        assert caught.value.code == 409
        again = await b.call("wizard.next", {"sessionId": started["sessionId"]})
        assert again["step"]["id"] == started["step"]["id"]
        nxt = await b.call("wizard.next", {"sessionId": started["sessionId"],
                                           "answer": {"stepId": started["step"]["id"]}})
        assert nxt["step"]["type"] == "confirm"
        assert (await a.call("wizard.status", {"sessionId": started["sessionId"]}))["status"] == "running"
    finally:
        cancelled = await b.call("wizard.cancel", {"sessionId": started["sessionId"]})
    assert cancelled["status"] == "cancelled"
    with pytest.raises(RpcError) as caught:
        await a.call("wizard.status", {"sessionId": started["sessionId"]})
    assert caught.value.code == 404


async def test_concurrent_agent_creates_of_one_name_give_one_agent(admins) -> None:
    a, b = admins

    async def create(client: GatewayClient) -> dict | RpcError:
        try:
            return await client.call("agents.create", {"name": "Twin", "workspace": "/tmp/twin"}, timeout=30)
        except RpcError as exc:
            return exc

    results = await asyncio.gather(create(a), create(b))
    assert sorted(type(r).__name__ for r in results) == ["RpcError", "dict"], results
    assert next(r for r in results if isinstance(r, RpcError)).code == 409
    for client in (a, b):
        assert [x["id"] for x in (await client.call("agents.list", {}))["agents"]].count("twin") == 1
    await a.call("agents.delete", {"agentId": "twin"})
