"""Client address, loopback and local-direct detection (auth-and-pairing.md §1.4, README D5)."""

from __future__ import annotations

import pytest

from gateway.protocol.netaddr import header, host_name, is_loopback, is_trusted_proxy, normalize_ip, resolve_client


def scope(peer: str = "127.0.0.1", host: str | None = "127.0.0.1:18789", **headers: str) -> dict:
    raw = [] if host is None else [(b"host", host.encode())]
    raw += [(name.replace("_", "-").lower().encode(), value.encode()) for name, value in headers.items()]
    return {"type": "websocket", "client": (peer, 50000), "headers": raw}


@pytest.mark.parametrize(("raw", "expected"), [
    ("127.0.0.1", "127.0.0.1"),
    ("  10.0.0.1  ", "10.0.0.1"),
    ("::ffff:127.0.0.1", "127.0.0.1"),
    ("::FFFF:203.0.113.5", "203.0.113.5"),
    ("203.0.113.5:8080", "203.0.113.5"),
    ("[::1]:443", "::1"),
    ("[2001:DB8::1]:80", "2001:db8::1"),
    ("FE80::1", "fe80::1"),
    ("", ""),
    (None, ""),
])
def test_normalize_ip(raw: str | None, expected: str) -> None:
    assert normalize_ip(raw) == expected


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "[::1]:9000", "127.0.0.1:80"])
def test_loopback_addresses(ip: str) -> None:
    assert is_loopback(ip)


@pytest.mark.parametrize("ip", ["10.0.0.1", "203.0.113.5", "::2", "128.0.0.1", "", "localhost", "::ffff:10.0.0.1"])
def test_non_loopback_addresses(ip: str) -> None:
    assert not is_loopback(ip)


def test_trusted_proxy_exact_match_and_cidr() -> None:
    trusted = ["10.0.0.0/8", "192.0.2.7"]
    assert is_trusted_proxy("10.20.30.40", trusted)
    assert is_trusted_proxy("::ffff:10.1.1.1", trusted)
    assert is_trusted_proxy("192.0.2.7", trusted)
    assert not is_trusted_proxy("192.0.2.8", trusted)
    assert not is_trusted_proxy("11.0.0.1", trusted)


def test_no_trusted_proxies_trusts_nobody() -> None:
    assert not is_trusted_proxy("127.0.0.1", [])
    assert not is_trusted_proxy("127.0.0.1", ["", "  "])


def test_malformed_proxy_entries_are_skipped() -> None:
    assert not is_trusted_proxy("10.0.0.1", ["not-a-cidr/99"])
    assert is_trusted_proxy("10.0.0.1", ["not-a-cidr/99", "10.0.0.1"])
    assert not is_trusted_proxy("garbage", ["10.0.0.0/8"])


@pytest.mark.parametrize(("value", "expected"), [
    ("localhost:18789", "localhost"), ("127.0.0.1", "127.0.0.1"), ("[::1]:18789", "::1"),
    ("Gateway.Example.COM:443", "gateway.example.com"), ("box.tail1234.ts.net", "box.tail1234.ts.net"),
])
def test_host_name_strips_port_and_brackets(value: str, expected: str) -> None:
    assert host_name(value) == expected


def test_loopback_peer_with_local_host_is_local_direct() -> None:
    addr = resolve_client(scope(), [])
    assert addr.local_direct
    assert addr.ip == "127.0.0.1"
    assert addr.reported_ip is None


def test_remote_peer_is_not_local_and_is_reported() -> None:
    addr = resolve_client(scope(peer="203.0.113.20", host="gateway.example.com"), [])
    assert not addr.local_direct
    assert addr.ip == "203.0.113.20"
    assert addr.reported_ip == "203.0.113.20"


def test_trusted_proxy_uses_rightmost_untrusted_forwarded_entry() -> None:
    """A client cannot make itself local by prepending 127.0.0.1 (README D5)."""
    addr = resolve_client(scope(x_forwarded_for="127.0.0.1, 203.0.113.5"), ["127.0.0.1"])
    assert addr.ip == "203.0.113.5"
    assert not addr.local_direct
    assert addr.reported_ip == "203.0.113.5"


def test_trusted_proxy_chain_skips_every_trusted_hop() -> None:
    trusted = ["127.0.0.1", "10.0.0.0/8"]
    addr = resolve_client(scope(x_forwarded_for="198.51.100.7, 203.0.113.5, 10.1.2.3"), trusted)
    assert addr.ip == "203.0.113.5"


def test_trusted_proxy_forwarding_a_loopback_client_is_local() -> None:
    addr = resolve_client(scope(x_forwarded_for="127.0.0.1"), ["127.0.0.1"])
    assert addr.ip == "127.0.0.1"
    assert addr.local_direct


def test_trusted_proxy_without_forwarded_for_falls_back_to_real_ip() -> None:
    addr = resolve_client(scope(x_real_ip="198.51.100.4"), ["127.0.0.1"])
    assert addr.ip == "198.51.100.4"
    assert not addr.local_direct


def test_untrusted_proxy_headers_make_loopback_remote() -> None:
    for headers in ({"x_forwarded_for": "127.0.0.1"}, {"x_real_ip": "127.0.0.1"},
                    {"x_forwarded_host": "localhost"}):
        addr = resolve_client(scope(**headers), [])
        assert not addr.local_direct, headers
        assert addr.ip == "127.0.0.1", "the bucket key stays the peer: a spoofed header changes nothing"
        assert addr.reported_ip is None


def test_spoofed_forwarded_for_from_untrusted_peer_does_not_change_the_client_ip() -> None:
    addr = resolve_client(scope(peer="203.0.113.50", host="gw.example.com", x_forwarded_for="198.51.100.1"), [])
    assert addr.ip == "203.0.113.50"


def test_non_local_host_makes_loopback_remote() -> None:
    addr = resolve_client(scope(host="gateway.example.com"), [])
    assert not addr.local_direct
    assert addr.ip == "127.0.0.1"


def test_missing_host_header_is_not_local() -> None:
    assert not resolve_client(scope(host=None), []).local_direct


def test_missing_peer_is_unknown() -> None:
    addr = resolve_client({"type": "websocket", "headers": []}, [])
    assert addr.ip == "unknown"
    assert not addr.local_direct


def test_first_header_value_wins() -> None:
    raw = scope()
    raw["headers"] += [(b"x-forwarded-for", b"203.0.113.1"), (b"x-forwarded-for", b"127.0.0.1")]
    addr = resolve_client(raw, ["127.0.0.1"])
    assert addr.ip == "203.0.113.1"
    assert header(raw, "X-Forwarded-For") == "203.0.113.1"
    assert header(raw, "x-missing") is None
