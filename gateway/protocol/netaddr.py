"""Client address, loopback and local-direct detection (auth-and-pairing.md §1.4, README D5)."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

log = logging.getLogger("gateway.net")

LOCAL_HOSTNAMES = {"localhost", "127.0.0.1", "::1"}


def normalize_ip(raw: str | None) -> str:
    ip = (raw or "").strip().lower()
    if ip.startswith("[") and "]" in ip:  # [v6]:port
        ip = ip[1:ip.index("]")]
    elif ip.count(":") == 1:  # v4:port
        ip = ip.split(":", 1)[0]
    if ip.startswith("::ffff:"):
        ip = ip[len("::ffff:"):]
    return ip


def is_loopback(ip: str) -> bool:
    ip = normalize_ip(ip)
    return ip.startswith("127.") or ip == "::1"


def is_trusted_proxy(ip: str, trusted: list[str]) -> bool:
    ip = normalize_ip(ip)
    for entry in trusted:
        entry = entry.strip()
        if not entry:
            continue
        if "/" in entry:
            try:
                if ipaddress.ip_address(ip) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif normalize_ip(entry) == ip:
            return True
    return False


def host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class ClientAddress:
    peer: str                 # the socket peer
    ip: str                   # the client address used for rate limiting and records
    local_direct: bool        # §1.4: loopback peer, local Host, no (untrusted) proxy headers
    reported_ip: str | None   # remoteIp for pairing records / presence (None when local)


def resolve_client(scope: dict, trusted_proxies: list[str]) -> ClientAddress:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        key = name.decode("latin-1").lower()
        headers.setdefault(key, value.decode("latin-1"))  # first value wins
    peer = normalize_ip((scope.get("client") or ("", 0))[0])
    forwarded = headers.get("x-forwarded-for")
    real_ip = headers.get("x-real-ip")
    has_proxy_headers = any(h in headers for h in ("x-forwarded-for", "x-real-ip", "x-forwarded-host"))
    peer_trusted = is_trusted_proxy(peer, trusted_proxies)
    ip = peer
    if peer_trusted:
        # README D5: the rightmost X-Forwarded-For entry that is not itself a trusted proxy,
        # so a client cannot make itself local by prepending 127.0.0.1.
        chain = [normalize_ip(p) for p in (forwarded or "").split(",") if p.strip()]
        candidate = next((p for p in reversed(chain) if not is_trusted_proxy(p, trusted_proxies)), None)
        ip = candidate or (normalize_ip(real_ip) if real_ip else peer)
    elif has_proxy_headers:
        log.warning("proxy headers from untrusted peer %s ignored; the connection is treated as remote", peer)
    host_ok = host_name(headers.get("host", "")) in LOCAL_HOSTNAMES or host_name(
        headers.get("host", "")).endswith(".ts.net")
    local = is_loopback(ip) and host_ok and (not has_proxy_headers or peer_trusted)
    if is_loopback(ip) and not host_ok and not has_proxy_headers:
        log.warning("loopback connection with non-local Host %r treated as remote", headers.get("host"))
    if local or (has_proxy_headers and not peer_trusted):
        reported = None
    else:
        reported = None if is_loopback(ip) else ip
    return ClientAddress(peer=peer, ip=ip or "unknown", local_direct=local, reported_ip=reported)


def header(scope: dict, name: str) -> str | None:
    want = name.lower().encode("latin-1")
    for key, value in scope.get("headers") or []:
        if key.lower() == want:
            return value.decode("latin-1")
    return None
