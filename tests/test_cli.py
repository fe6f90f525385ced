"""`manage.py gateway call` against a live gateway (a subprocess, as an operator would run it)."""

from __future__ import annotations

import json
import subprocess

import pytest

from gateway.client import GatewayClient
from tests.multiproc_util import Cluster, missing_services
from tests.support import PROJECT_DIR, PYTHON, GatewayServer, free_port, start_gateway


def gateway_call(server: GatewayServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "manage.py", "gateway", "call", *args], cwd=PROJECT_DIR, env=server.env,
                          capture_output=True, text=True, timeout=60)


def test_gateway_call_health_prints_json_and_exits_zero(gateway_server: GatewayServer) -> None:
    done = gateway_call(gateway_server, "health", "--url", gateway_server.url, "--token", gateway_server.token)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["ok"] is True
    assert payload["defaultAgentId"] == "main"


def test_gateway_call_passes_params(gateway_server: GatewayServer) -> None:
    done = gateway_call(gateway_server, "logs.tail", "--params", '{"limit": 5}', "--url", gateway_server.url,
                        "--token", gateway_server.token, "--scopes", "operator.read")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["lines"]) <= 5


def test_gateway_call_unknown_method_exits_non_zero(gateway_server: GatewayServer) -> None:
    done = gateway_call(gateway_server, "no.such.method", "--url", gateway_server.url, "--token",
                        gateway_server.token)
    assert done.returncode != 0
    assert json.loads(done.stdout)["error"]["code"] == 404


def test_gateway_call_missing_scope_exits_non_zero(gateway_server: GatewayServer) -> None:
    done = gateway_call(gateway_server, "system-event", "--params", '{"text": "x"}', "--url", gateway_server.url,
                        "--token", gateway_server.token, "--scopes", "operator.read")
    assert done.returncode != 0
    assert json.loads(done.stdout)["error"]["reason"] == "MISSING_SCOPE"


def test_gateway_call_with_a_wrong_token_exits_non_zero(gateway_server: GatewayServer) -> None:
    done = gateway_call(gateway_server, "health", "--url", gateway_server.url, "--token", "wrong-token")
    assert done.returncode != 0
    output = json.loads(done.stdout)
    assert output["error"]["code"] == 401 and output["during"] == "connect"


def test_gateway_call_with_bad_params_json_exits_non_zero(gateway_server: GatewayServer) -> None:
    done = gateway_call(gateway_server, "health", "--params", "{not json", "--url", gateway_server.url,
                        "--token", gateway_server.token)
    assert done.returncode != 0
    assert "--params" in done.stderr


def test_gateway_call_without_a_gateway_exits_non_zero(gateway_server: GatewayServer) -> None:
    from tests.support import free_port

    done = gateway_call(gateway_server, "health", "--url", f"ws://127.0.0.1:{free_port()}", "--token", "t")
    assert done.returncode != 0
    assert "cannot reach the gateway" in done.stderr


async def test_serve_on_a_fresh_state_directory_migrates_sqlite_first() -> None:
    server = start_gateway(migrate_first=False)
    try:
        client = await GatewayClient.connect(server.url, token=server.token, scopes=["operator.read"])
        try:
            assert (await client.call("health"))["ok"] is True
            assert (await client.call("sessions.list"))["sessions"] == []
        finally:
            await client.close()
        assert "migrating the database" in server.output()
    finally:
        server.stop()


def test_serve_refuses_an_unmigrated_shared_database_with_the_command_to_run() -> None:
    """Several processes migrating one PostgreSQL database at once would race: the operator migrates."""
    missing = [m for m in missing_services() if m.startswith("PostgreSQL")]
    if missing:
        print(f"\nSKIPPED: needs {missing[0]}")
        pytest.skip(f"needs {missing[0]}")
    cluster = Cluster()
    cluster.create_database()
    try:
        state_dir = cluster.work_dir / "state"
        state_dir.mkdir()
        done = subprocess.run([PYTHON, "manage.py", "gateway", "serve", "--port", "0"], cwd=PROJECT_DIR,
                              env=cluster.env(state_dir), capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "unapplied migrations" in done.stderr and "manage.py migrate" in done.stderr, done.stderr
    finally:
        cluster.drop_database()
        cluster.remove_work_dir()


async def test_gateway_call_and_the_banner_follow_a_token_set_in_the_config() -> None:
    """The config document wins over the environment (the wizard writes gateway.auth.token):
    `gateway call` without --token, and the start-up banner, use the token in force."""
    server = start_gateway()
    try:
        admin = await GatewayClient.connect(server.url, token=server.token, scopes=["operator.admin"])
        try:
            base = (await admin.call("config.get"))["hash"]
            await admin.call("config.set", {"path": "gateway.auth.token", "value": "token-from-the-config-0123",
                                            "baseHash": base})
        finally:
            await admin.close()
        done = gateway_call(server, "health", "--url", server.url)
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert json.loads(done.stdout)["ok"] is True
        stale = gateway_call(server, "health", "--url", server.url, "--token", server.token)
        assert stale.returncode == 2 and "TOKEN_MISMATCH" in stale.stdout, stale.stdout

    finally:
        server.stop()

    restarted = subprocess.Popen([PYTHON, "manage.py", "gateway", "serve", "--port", str(free_port())],
                                 cwd=PROJECT_DIR, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
    try:
        lines = [restarted.stdout.readline() for _ in range(3)]
    finally:
        restarted.kill()
        restarted.wait()
    token_line = next((line for line in lines if line.startswith("token:")), "")
    assert "token-from-the-config-0123" in token_line and "gateway.auth.token" in token_line, lines
    assert server.token not in "".join(lines)
