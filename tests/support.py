"""Helpers shared by the project's tests: a throw-away gateway process, raw WebSocket
handshakes (for the failure paths GatewayClient does not expose) and an Ed25519 device that
signs its own connect (auth-and-pairing.md §2.3)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import nacl.signing
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.client import ALL_OPERATOR_SCOPES, GatewayClient
from gateway.protocol.frames import dumps, loads

PROJECT_DIR = Path(__file__).resolve().parent.parent
_VENV_PYTHON = PROJECT_DIR / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable

READ = ["operator.read"]
WRITE = ["operator.write"]
ADMIN = list(ALL_OPERATOR_SCOPES)
PAIRING = ["operator.pairing"]


# --- a gateway process -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gateway_env(state_dir: Path, token: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without anything that would change the gateway's set-up
    (a developer's ANIMA_* or REDIS_URL), plus the test's own state directory and token."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANIMA_") and k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "ANIMA_STATE_DIR": str(state_dir),
        "ANIMA_GATEWAY_TOKEN": token,
        "DATABASE_URL": f"sqlite:///{state_dir / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "anima_site.settings",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


@dataclass
class GatewayServer:
    """A gateway started with `manage.py gateway serve` on a free loopback port."""

    url: str
    token: str
    state_dir: Path
    log_path: Path          # the gateway's own log file (what logs.tail reads)
    output_path: Path       # the process's stdout and stderr
    port: int
    env: dict[str, str]
    process: subprocess.Popen = field(repr=False)

    @property
    def v3_url(self) -> str:
        return self.url + "/v3"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_gateway(extra_env: dict[str, str] | None = None, startup_timeout: float = 30,
                  migrate_first: bool = True) -> GatewayServer:
    state_dir = Path(tempfile.mkdtemp(prefix="anima-gw-test-"))
    token = secrets.token_hex(24)
    env = gateway_env(state_dir, token, extra_env)
    migrate = subprocess.run([PYTHON, "manage.py", "migrate", "--noinput"] if migrate_first else ["true"],
                             cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120)
    if migrate.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
    return launch_gateway(state_dir, token, env, startup_timeout=startup_timeout)


def launch_gateway(state_dir: Path, token: str, env: dict[str, str], *, startup_timeout: float = 30) -> GatewayServer:
    """`gateway serve` on a free port with this environment (state dir, database, token); returns
    once it listens. Also used to restart a gateway on the same state."""
    port = free_port()
    output_path = state_dir / f"server-{port}.out"
    with open(output_path, "wb") as out:
        process = subprocess.Popen(
            [PYTHON, "manage.py", "gateway", "serve", "--quiet", "--bind", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = GatewayServer(url=f"ws://127.0.0.1:{port}", token=token, state_dir=state_dir,
                           log_path=state_dir / "gateway.log", output_path=output_path, port=port, env=env,
                           process=process)
    deadline = time.monotonic() + startup_timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited during start-up ({process.returncode}):\n{server.output()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the gateway did not listen within {startup_timeout}s:\n{server.output()}")
        time.sleep(0.05)


# --- raw sockets -------------------------------------------------------------------------------------

async def open_socket(url: str, headers: dict[str, str] | None = None) -> tuple[ClientConnection, dict]:
    """Open a WebSocket and read the challenge (always the first frame)."""
    ws = await connect(url, additional_headers=headers, max_size=None, compression=None, ping_interval=None,
                       proxy=None)
    challenge = loads(await asyncio.wait_for(ws.recv(), 10))
    return ws, challenge


def connect_params(*, token: str | None = None, scopes: list[str] | None = None, role: str | None = None,
                   client_id: str = "test", mode: str = "test", min_protocol: int = 1, max_protocol: int = 3,
                   display_name: str | None = None, instance_id: str | None = None,
                   device: dict | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "minProtocol": min_protocol, "maxProtocol": max_protocol,
        "client": {"id": client_id, "version": "0.0.1-test", "platform": "pytest", "mode": mode},
        "scopes": list(scopes or []),
    }
    if role is not None:
        params["role"] = role
    if token is not None:
        params["auth"] = {"token": token}
    if display_name:
        params["client"]["displayName"] = display_name
    if instance_id:
        params["client"]["instanceId"] = instance_id
    if device is not None:
        params["device"] = device
    return params


def req(method: str, params: Any = None, rid: str = "r1") -> str:
    frame: dict[str, Any] = {"type": "req", "id": rid, "method": method}
    if params is not None:
        frame["params"] = params
    return dumps(frame)


async def recv_json(ws: ClientConnection, timeout: float = 10) -> dict:
    return loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_response(ws: ClientConnection, rid: str, timeout: float = 10) -> dict:
    """The next `res` frame for `rid`, skipping events."""
    async def wait() -> dict:
        while True:
            frame = loads(await ws.recv())
            if frame.get("type") == "res" and frame.get("id") == rid:
                return frame
    return await asyncio.wait_for(wait(), timeout)


async def frames_until_close(ws: ClientConnection, timeout: float = 10) -> list[dict]:
    """Every frame the server sends until it closes the socket."""
    frames: list[dict] = []

    async def drain() -> None:
        try:
            async for raw in ws:
                frames.append(loads(raw))
        except ConnectionClosed:
            pass

    await asyncio.wait_for(drain(), timeout)
    return frames


async def handshake(url: str, params: dict[str, Any], headers: dict[str, str] | None = None
                    ) -> tuple[ClientConnection, dict, dict]:
    """Open a socket, send `connect`, return (socket, challenge, the connect response)."""
    ws, challenge = await open_socket(url, headers)
    await ws.send(req("connect", params, rid="connect"))
    return ws, challenge, await recv_response(ws, "connect")


# --- device identity -----------------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def now_ms() -> int:
    return int(time.time() * 1000)


class DeviceKey:
    """An Ed25519 device: id = hex SHA-256 of the raw public key."""

    def __init__(self) -> None:
        self.signing_key = nacl.signing.SigningKey.generate()
        self.raw_public_key = bytes(self.signing_key.verify_key)
        self.public_key = b64url(self.raw_public_key)
        self.id = hashlib.sha256(self.raw_public_key).hexdigest()

    def sign(self, message: str) -> str:
        return b64url(self.signing_key.sign(message.encode()).signature)

    def identity(self, *, client_id: str, client_mode: str, role: str, scopes: list[str], token: str | None,
                 nonce: str | None, signed_at: int | None = None, signed_scopes: list[str] | None = None
                 ) -> dict[str, Any]:
        """`device` for connect params; `signed_scopes` signs other scopes than those sent (tampering)."""
        signed_at = now_ms() if signed_at is None else signed_at
        parts = ["v2" if nonce else "v1", self.id, client_id, client_mode, role,
                 ",".join(scopes if signed_scopes is None else signed_scopes), str(signed_at), token or ""]
        if nonce:
            parts.append(nonce)
        device: dict[str, Any] = {"id": self.id, "publicKey": self.public_key, "signature": self.sign("|".join(parts)),
                                  "signedAt": signed_at}
        if nonce:
            device["nonce"] = nonce
        return device


REMOTE = {"X-Forwarded-For": "203.0.113.9"}  # proxy header from an untrusted peer: never local-direct


@dataclass
class DeviceHandshake:
    ws: ClientConnection
    challenge: dict
    response: dict

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> dict:
        return self.response.get("error") or {}

    @property
    def hello(self) -> dict:
        return self.response.get("payload") or {}

    def client(self) -> GatewayClient:
        """Hand the admitted socket to a GatewayClient (call/next_event)."""
        assert self.ok, self.response
        return GatewayClient(self.ws, self.hello, self.challenge)


async def device_handshake(url: str, device: DeviceKey, *, token: str | None, scopes: list[str],
                           headers: dict[str, str] | None = None, role: str = "operator", sign_nonce: bool = True,
                           client_id: str = "test-device", mode: str = "ui",
                           signed_scopes: list[str] | None = None, signed_at: int | None = None,
                           nonce: str | None = None) -> DeviceHandshake:
    """Connect as `device`, signing this socket's challenge nonce (v2) unless sign_nonce is False (v1);
    `nonce` signs and sends another nonce instead (replay), `signed_at` another time."""
    ws, challenge = await open_socket(url, headers)
    if nonce is None and sign_nonce:
        nonce = challenge["payload"]["nonce"]
    identity = device.identity(client_id=client_id, client_mode=mode, role=role, scopes=scopes, token=token,
                               nonce=nonce, signed_scopes=signed_scopes, signed_at=signed_at)
    params = connect_params(token=token, scopes=scopes, role=role, client_id=client_id, mode=mode,
                            device=identity)
    await ws.send(req("connect", params, rid="connect"))
    return DeviceHandshake(ws, challenge, await recv_response(ws, "connect"))


# --- misc -----------------------------------------------------------------------------------------------

async def call_error(client: GatewayClient, method: str, params: Any = None) -> dict:
    """Call a method that must fail; return its error object."""
    frame = await client.request(method, params)
    assert not frame.get("ok"), f"{method} succeeded unexpectedly: {frame!r}"
    return frame["error"]


async def still_usable(client: GatewayClient) -> None:
    """The socket survived: a read method still answers (needs operator.read or more)."""
    assert (await client.call("health"))["ok"] is True


@contextmanager
def temporary_method(name: str, handler: Any, scope: str = "read", params: Any = None) -> Iterator[None]:
    """Register a method in the in-process REGISTRY for one test."""
    from gateway.protocol.registry import REGISTRY, MethodSpec, NoParams

    assert name not in REGISTRY
    REGISTRY[name] = MethodSpec(name, scope, params or NoParams, handler)
    try:
        yield
    finally:
        REGISTRY.pop(name, None)


async def send_raw(client: GatewayClient, data: str | bytes, rid: str, timeout: float = 10) -> dict:
    """Send a hand-made frame on an authenticated client and wait for the response under `rid`
    (GatewayClient only routes responses it is waiting for, so register the id first)."""
    future = client._waiting.setdefault(rid, asyncio.get_running_loop().create_future())
    await client.ws.send(data)
    return await asyncio.wait_for(future, timeout)


async def request_two_phase(client: GatewayClient, method: str, params: Any, timeout: float = 10
                            ) -> tuple[dict, asyncio.Future]:
    """Send a two-phase request; return its first (`accepted`) response and a future for the
    final response under the same id (GatewayClient itself keeps only the first)."""
    rid = f"two-phase-{secrets.token_hex(4)}"
    loop = asyncio.get_running_loop()
    first = client._waiting.setdefault(rid, loop.create_future())
    await client.ws.send(dumps({"type": "req", "id": rid, "method": method, "params": params}))
    accepted = await asyncio.wait_for(first, timeout)
    return accepted, client._waiting.setdefault(rid, loop.create_future())
