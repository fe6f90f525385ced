"""Helpers for the multi-process tests: service probes, a two-gateway cluster on a throw-away
PostgreSQL database and Redis key prefix, and an Ed25519 device that signs its own connect."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from websockets.asyncio.client import ClientConnection, connect

PROJECT_DIR = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
# What a gateway process inherits from the caller's environment must not change the set-up.
SCRUBBED_ENV = ("DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY")


# --- services ----------------------------------------------------------------------------------

def missing_services() -> list[str]:
    """Which of PostgreSQL and Redis cannot be reached, each with the error seen."""
    import psycopg
    import redis

    missing = []
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means "not usable here"; the message says which
        missing.append(f"PostgreSQL at {POSTGRES_ADMIN_URL} ({type(exc).__name__}: {exc})".strip())
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        missing.append(f"Redis at {REDIS_URL} ({type(exc).__name__}: {exc})")
    return missing


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the cluster --------------------------------------------------------------------------------

@dataclass
class GatewayProcess:
    name: str
    port: int
    state_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"


@dataclass
class Cluster:
    """Two gateway processes sharing one fresh PostgreSQL database and one Redis key prefix."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="anima-mp-")))
    gateways: list[GatewayProcess] = field(default_factory=list)
    db_created: bool = False

    @property
    def db_name(self) -> str:
        return f"anima_mp_{self.suffix}"

    @property
    def redis_prefix(self) -> str:
        return f"anima-test-{self.suffix}"

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:5432/{self.db_name}"

    def env(self, state_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMA_") and k not in SCRUBBED_ENV}
        env.update({
            "DJANGO_SETTINGS_MODULE": "anima_site.settings",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": REDIS_URL,
            "ANIMA_REDIS_PREFIX": self.redis_prefix,
            "ANIMA_GATEWAY_TOKEN": self.token,
            "ANIMA_STATE_DIR": str(state_dir),
            "DJANGO_SECRET_KEY": f"mp-{self.suffix}-" + "x" * 40,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    # set-up

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_created = True

    def migrate(self) -> None:
        state_dir = self.work_dir / "migrate-state"
        state_dir.mkdir()
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=PROJECT_DIR,
                              env=self.env(state_dir), capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"migrate failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self, *names: str) -> None:
        for name in names:
            state_dir = self.work_dir / f"state-{name}"
            state_dir.mkdir()
            gw = GatewayProcess(name=name, port=free_port(), state_dir=state_dir,
                                log_path=self.work_dir / f"gateway-{name}.log")
            with gw.log_path.open("wb") as log:
                gw.proc = subprocess.Popen(
                    [sys.executable, "manage.py", "gateway", "serve", "--quiet", "--bind", "127.0.0.1",
                     "--port", str(gw.port)],
                    cwd=PROJECT_DIR, env=self.env(state_dir), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL)
            self.gateways.append(gw)

    def wait_ready(self, timeout: float = 60) -> None:
        """Each gateway answers a real connect and a `health` call (its runtime has started)."""
        asyncio.run(self._wait_ready(timeout))

    async def _wait_ready(self, timeout: float) -> None:
        from gateway.client import GatewayClient

        deadline = time.monotonic() + timeout
        for gw in self.gateways:
            last: BaseException | None = None
            while True:
                assert gw.proc is not None
                if gw.proc.poll() is not None:
                    raise RuntimeError(f"gateway {gw.name} exited with {gw.proc.returncode}:\n{gw.log_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gateway {gw.name} not ready after {timeout}s ({last!r}):\n{gw.log_text()}")
                try:
                    client = await GatewayClient.connect(gw.url, token=self.token, scopes=["operator.read"])
                    try:
                        await client.call("health", timeout=10)
                    finally:
                        await client.close()
                    break
                except Exception as exc:  # not accepting connections yet: retry
                    last = exc
                    await asyncio.sleep(0.2)

    # tear-down

    def stop(self) -> None:
        for gw in self.gateways:
            if gw.proc is not None and gw.proc.poll() is None:
                gw.proc.terminate()
        for gw in self.gateways:
            if gw.proc is None:
                continue
            try:
                gw.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gw.proc.kill()
                gw.proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"===== gateway {gw.name} (port {gw.port}) log =====\n{gw.log_text()}"
                         for gw in self.gateways)

    def drop_database(self) -> None:
        import psycopg

        if not self.db_created:
            return
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self.db_created = False

    def flush_redis_prefix(self) -> int:
        """Delete only this run's keys (SCAN + DEL); never FLUSHALL."""
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        deleted = 0
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{self.redis_prefix}*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += client.delete(*batch)
                    batch = []
            if batch:
                deleted += client.delete(*batch)
        finally:
            client.close()
        return deleted

    def remove_work_dir(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


# --- a device with an Ed25519 identity ------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Device:
    """An Ed25519 identity (auth-and-pairing.md §2): id = sha256 hex of the raw public key."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.raw_public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = hashlib.sha256(self.raw_public).hexdigest()
        self.public_key = b64url(self.raw_public)

    def signed_identity(self, *, client_id: str, client_mode: str, role: str, scopes: list[str],
                        token: str | None, nonce: str) -> dict[str, Any]:
        """`connect.params.device` with a v2 signature (§2.3) over the challenge nonce."""
        signed_at = int(time.time() * 1000)
        payload = "|".join(["v2", self.id, client_id, client_mode, role, ",".join(scopes), str(signed_at),
                            token or "", nonce])
        return {"id": self.id, "publicKey": self.public_key, "signedAt": signed_at, "nonce": nonce,
                "signature": b64url(self.key.sign(payload.encode()))}


@dataclass
class DeviceConnect:
    """The outcome of a device's connect: the open socket and hello-ok, or the error frame."""

    ws: ClientConnection
    challenge: dict[str, Any]
    response: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def hello(self) -> dict[str, Any]:
        return self.response.get("payload") or {}

    @property
    def error(self) -> dict[str, Any]:
        return self.response.get("error") or {}


async def device_connect(url: str, device: Device, *, token: str, scopes: list[str],
                         forwarded_for: str | None = "203.0.113.7", client_id: str = "mp-device",
                         client_mode: str = "ui", display_name: str | None = None,
                         role: str = "operator", platform: str = "python",
                         extra: dict[str, Any] | None = None) -> DeviceConnect:
    """Connect as `device`, signing this socket's challenge nonce. X-Forwarded-For from an
    untrusted peer makes the connection remote (no silent local auto-approval); without it
    (forwarded_for=None) the device is local-direct. `extra` adds connect params (e.g. a
    node's `commands` and `caps`)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    ws = await connect(url, additional_headers=headers, compression=None, ping_interval=None, proxy=None,
                       max_size=64 * 1024 * 1024)
    try:
        challenge = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert challenge.get("event") == "connect.challenge", challenge
        nonce = challenge["payload"]["nonce"]
        client = {"id": client_id, "version": "0.1.0", "platform": platform, "mode": client_mode}
        if display_name:
            client["displayName"] = display_name
        params = {"minProtocol": 1, "maxProtocol": 3, "client": client, "role": role, "scopes": list(scopes),
                  "auth": {"token": token},
                  "device": device.signed_identity(client_id=client_id, client_mode=client_mode, role=role,
                                                   scopes=list(scopes), token=token, nonce=nonce)}
        params.update(extra or {})
        await ws.send(orjson.dumps({"type": "req", "id": "connect", "method": "connect", "params": params}).decode())
        while True:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 15))
            if frame.get("type") == "res" and frame.get("id") == "connect":
                return DeviceConnect(ws, challenge, frame)
    except BaseException:
        await ws.close()
        raise


async def close_code_of(ws: ClientConnection, timeout: float = 10) -> int | None:
    """Read (and discard) frames until the server closes; the close code it sent."""
    async def drain() -> None:
        try:
            async for _ in ws:
                pass
        except Exception:  # ConnectionClosedError carries the code we read below
            pass

    try:
        await asyncio.wait_for(drain(), timeout)
    except TimeoutError:
        raise AssertionError(f"the server did not close the connection within {timeout}s") from None
    return ws.close_code


# --- the cluster as a fixture ------------------------------------------------------------------------------------

def skip_without_services() -> None:
    """Skip (with the reason printed) where PostgreSQL or Redis is missing; fail in CI, which has both."""
    missing = missing_services()
    if missing:
        why = "the multi-process tests need " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}. CI provides both services, so these tests must run there, not be skipped.",
                        pytrace=False)
        print(f"\nSKIPPED: {why}")
        pytest.skip(why)


def running_cluster(request: pytest.FixtureRequest, cluster: Cluster | None = None, names: tuple[str, ...] = ("A", "B"),
                    ready_timeout: float = 60) -> Iterator[Cluster]:
    """A fixture body: fresh database + Redis prefix, migrated once, the named gateways running;
    everything removed afterwards (with the gateways' logs printed when a test failed)."""
    skip_without_services()
    cluster = cluster or Cluster()
    failed_before = request.session.testsfailed
    started = time.monotonic()
    try:
        cluster.create_database()
        cluster.migrate()
        cluster.start(*names)
        cluster.wait_ready(timeout=ready_timeout)
        print(f"\ncluster up in {time.monotonic() - started:.1f}s: db {cluster.db_name}, "
              f"redis prefix {cluster.redis_prefix}, "
              + ", ".join(f"{gw.name} on :{gw.port}" for gw in cluster.gateways))
    except BaseException:
        tear_down(cluster, print_logs=True)
        raise
    yield cluster
    tear_down(cluster, print_logs=request.session.testsfailed > failed_before)


def tear_down(cluster: Cluster, *, print_logs: bool) -> None:
    try:
        cluster.stop()
        if print_logs:
            print("\n" + cluster.logs())
    finally:
        try:
            cluster.drop_database()
        finally:
            try:
                cluster.flush_redis_prefix()
            finally:
                cluster.remove_work_dir()
