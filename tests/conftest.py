"""Fixtures: a real gateway process (session-wide, or fresh for one test), authenticated client
factories on top of it, and the in-process ASGI application for Channels' communicators."""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest

from gateway.client import GatewayClient
from tests.support import ADMIN, GatewayServer, start_gateway

ClientFactory = Callable[..., Awaitable[GatewayClient]]


def _stop(server: GatewayServer) -> None:
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """A failing real-socket test shows the tail of its gateway's output."""
    report = yield
    if report.when == "call" and report.failed:
        for name in ("gateway_server", "fresh_gateway_server"):
            server = getattr(item, "funcargs", {}).get(name)
            if isinstance(server, GatewayServer):
                report.sections.append((f"gateway output ({name})", server.output()[-4000:]))
    return report


@pytest.fixture(scope="session")
def gateway_server() -> Iterator[GatewayServer]:
    """One gateway for the whole session, started as it is deployed (`manage.py gateway serve`)."""
    server = start_gateway()
    yield server
    _stop(server)


@pytest.fixture
def fresh_gateway_server() -> Iterator[GatewayServer]:
    """A gateway of this test's own (for tests that stop it or need clean state)."""
    server = start_gateway()
    yield server
    _stop(server)


@pytest.fixture
def gateway_server_factory() -> Iterator[Callable[..., GatewayServer]]:
    """Start gateways with extra environment (e.g. trusted proxies); all stopped afterwards."""
    servers: list[GatewayServer] = []

    def make(**env: str) -> GatewayServer:
        server = start_gateway(env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        _stop(server)


@pytest.fixture
async def client(gateway_server: GatewayServer) -> AsyncIterator[ClientFactory]:
    """`await client(scopes=[...])` -> an authenticated GatewayClient (closed after the test).
    Keyword arguments go to GatewayClient.connect; `server=` picks another gateway."""
    clients: list[GatewayClient] = []

    async def make(scopes: list[str] | None = None, *, server: GatewayServer | None = None, v3: bool = False,
                   **kw: Any) -> GatewayClient:
        srv = server or gateway_server
        kw.setdefault("token", srv.token)
        conn = await GatewayClient.connect(srv.v3_url if v3 else srv.url, scopes=[] if scopes is None else scopes,
                                           **kw)
        clients.append(conn)
        return conn

    yield make
    for conn in clients:
        await conn.close()


@pytest.fixture
async def admin_client(client: ClientFactory) -> GatewayClient:
    """A connection holding every operator scope."""
    return await client(ADMIN)


@pytest.fixture
async def inprocess_app(transactional_db: None, settings: Any) -> AsyncIterator[tuple[Any, Any]]:
    """(application, runtime) of an in-process gateway for WebsocketCommunicator tests, with the
    shared token `inproc-token`. Its background loops are stopped afterwards."""
    from django.core.asgi import get_asgi_application
    from django.core.cache import cache

    from gateway.asgi_app import build_application
    from gateway.runtime import GatewayRuntime

    cache.clear()  # rate-limit buckets, presence and counters start afresh
    settings.ANIMA_GATEWAY_TOKEN = "inproc-token"
    settings.ANIMA_GATEWAY_PASSWORD = ""
    runtime = GatewayRuntime()
    application = build_application(runtime, get_asgi_application())
    yield application, runtime
    await runtime.shutdown()
