"""browser.request (operations.md §10): forwarded as `browser.proxy` to a connected
browser-capable node; this gateway drives no local browser, so without such a node it answers 503."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from gateway.config import config_value
from gateway.protocol.context import CallContext
from gateway.protocol.errors import invalid, unavailable
from gateway.protocol.registry import WRITE, Params, method

METHODS = ("GET", "POST", "DELETE")
DEFAULT_TIMEOUT_MS = 20_000
PROXY_COMMAND = "browser.proxy"


class BrowserRequestParams(Params):
    method: str | None = None
    path: str | None = None
    query: dict[str, Any] | None = None
    body: Any = None
    timeout_ms: Annotated[int, Field(ge=1)] | None = None
    profile: str | None = None


def browser_capable(info: dict[str, Any]) -> bool:
    return "browser" in (info.get("caps") or []) or PROXY_COMMAND in (info.get("commands") or [])


def pick_node(live: dict[str, dict[str, Any]]) -> str | None:
    """The node to forward to under `gateway.nodes.browser.{mode,node}`, None for the local path."""
    mode = config_value("gateway.nodes.browser.mode", "auto")
    if mode == "off":
        return None
    pinned = (config_value("gateway.nodes.browser.node") or "").strip()
    capable = {nid: info for nid, info in live.items() if browser_capable(info)}
    if pinned:
        match = [nid for nid, info in capable.items() if pinned in (nid, info.get("displayName"))]
        if not match:
            raise unavailable(f"Configured browser node not connected: {pinned}")
        if len(match) > 1:
            raise unavailable(f"Configured browser node is ambiguous: {pinned}")
        return match[0]
    if mode == "manual" or not capable:
        return None
    if len(capable) > 1:
        raise unavailable("Several browser-capable nodes are connected; set gateway.nodes.browser.node")
    return next(iter(capable))


@method("browser.request", scope=WRITE, params=BrowserRequestParams)
async def browser_request(ctx: CallContext, params: BrowserRequestParams) -> Any:
    from pairing.methods.nodes import invoke_node

    verb, path = (params.method or "").strip().upper(), (params.path or "").strip()
    if not verb or not path:
        raise invalid("method and path are required")
    if verb not in METHODS:
        raise invalid("method must be GET, POST, or DELETE")
    node_id = pick_node(ctx.runtime.nodes.live())
    if node_id is None:
        if config_value("browser.enabled") is False:
            raise unavailable("browser control is disabled (browser.enabled is false)")
        raise unavailable("No connected browser-capable nodes. This gateway drives no local browser: connect a "
                          "node that offers browser.proxy")
    timeout_ms = params.timeout_ms or DEFAULT_TIMEOUT_MS
    forwarded = {"method": verb, "path": path, "query": params.query or {}, "timeoutMs": timeout_ms}
    if params.body is not None:
        forwarded["body"] = params.body
    if params.profile:
        forwarded["profile"] = params.profile
    res = await invoke_node(ctx, node_id, PROXY_COMMAND, forwarded, timeout_ms + 5_000, None)
    payload = res.get("payload")
    return payload["result"] if isinstance(payload, dict) and "result" in payload else payload
