"""An async client of the gateway protocol (seed dialect by default), used by
`manage.py gateway call`, the benchmark and the project's tests."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from gateway.protocol.frames import dumps, loads

ALL_OPERATOR_SCOPES = ["operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing"]


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]):
        self.error = error
        self.code = error.get("code")
        self.reason = error.get("reason") or (error.get("details") or {}).get("code")
        super().__init__(f"{self.code} {self.reason or ''} {error.get('message', '')}".strip())


class GatewayClient:
    """One authenticated connection: `await call(method, params)`, `await next_event(name)`."""

    def __init__(self, ws: ClientConnection, hello: dict[str, Any], challenge: dict[str, Any]):
        self.ws = ws
        self.hello = hello
        self.challenge = challenge
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, *, token: str | None = None, password: str | None = None,
                      scopes: list[str] | None = None, role: str = "operator", client_id: str = "cli",
                      mode: str = "cli", display_name: str | None = None, extra: dict[str, Any] | None = None,
                      max_size: int | None = 64 * 1024 * 1024) -> GatewayClient:
        ws = await connect(url, max_size=max_size, compression=None, ping_interval=None, proxy=None)
        try:
            challenge = loads(await asyncio.wait_for(ws.recv(), 10))
            params: dict[str, Any] = {
                "minProtocol": 1 if not url.rstrip("/").endswith("/v3") else 3, "maxProtocol": 3,
                "client": {"id": client_id, "version": "0.1.0", "platform": "python", "mode": mode},
                "role": role, "scopes": list(ALL_OPERATOR_SCOPES if scopes is None else scopes)}
            if display_name:
                params["client"]["displayName"] = display_name
            auth = {k: v for k, v in (("token", token), ("password", password)) if v}
            if auth:
                params["auth"] = auth
            params.update(extra or {})
            await ws.send(dumps({"type": "req", "id": "connect", "method": "connect", "params": params}))
            while True:
                frame = loads(await asyncio.wait_for(ws.recv(), 15))
                if frame.get("type") == "res" and frame.get("id") == "connect":
                    break
            if not frame.get("ok"):
                raise RpcError(frame.get("error") or {})
        except BaseException:
            await ws.close()
            raise
        return cls(ws, frame["payload"], challenge)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = loads(raw)
                if frame.get("type") == "res":
                    future = self._waiting.pop(frame.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                else:
                    self.events.put_nowait(frame)
        except Exception:
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))

    async def request(self, method: str, params: Any = None, timeout: float = 30) -> dict[str, Any]:
        rid = f"c{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        await self.ws.send(dumps({"type": "req", "id": rid, "method": method, "params": params or {}}))
        return await asyncio.wait_for(future, timeout)

    async def call(self, method: str, params: Any = None, timeout: float = 30) -> Any:
        frame = await self.request(method, params, timeout)
        if not frame.get("ok"):
            raise RpcError(frame.get("error") or {})
        return frame.get("payload")

    async def next_event(self, name: str | None = None, timeout: float = 10) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                event = await self.events.get()
                if name is None or event.get("event") == name:
                    return event
        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
