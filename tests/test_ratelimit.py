"""Auth brute-force limiter (auth-and-pairing.md §1.8, README D5): 10 failures per IP and
bucket lock that IP for 5 minutes; loopback is exempt; buckets are independent."""

from __future__ import annotations

from typing import Iterator

import pytest
from django.core.cache import cache

from gateway.protocol.ratelimit import DEVICE_TOKEN, SHARED_SECRET, AuthRateLimiter, LimiterPolicy

REMOTE = "203.0.113.40"
OTHER = "203.0.113.41"


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def limiter() -> AuthRateLimiter:
    return AuthRateLimiter(LimiterPolicy())


def fail(limiter: AuthRateLimiter, ip: str, bucket: str = SHARED_SECRET, times: int = 1) -> None:
    for _ in range(times):
        limiter.record_failure(ip, bucket)


def test_default_policy_is_ten_failures_per_minute_then_five_minutes() -> None:
    policy = LimiterPolicy()
    assert (policy.max_attempts, policy.window_ms, policy.lockout_ms, policy.exempt_loopback) == (
        10, 60_000, 300_000, True)


def test_nine_failures_do_not_lock(limiter: AuthRateLimiter) -> None:
    fail(limiter, REMOTE, times=9)
    assert limiter.retry_after_ms(REMOTE, SHARED_SECRET) is None


def test_ten_failures_from_a_remote_ip_lock_it(limiter: AuthRateLimiter) -> None:
    fail(limiter, REMOTE, times=10)
    retry = limiter.retry_after_ms(REMOTE, SHARED_SECRET)
    assert retry is not None and 0 < retry <= 300_000


def test_failures_while_locked_do_not_extend_or_break_the_lock(limiter: AuthRateLimiter) -> None:
    fail(limiter, REMOTE, times=10)
    first = limiter.retry_after_ms(REMOTE, SHARED_SECRET)
    fail(limiter, REMOTE, times=5)
    again = limiter.retry_after_ms(REMOTE, SHARED_SECRET)
    assert first is not None and again is not None and again <= first


def test_loopback_is_exempt(limiter: AuthRateLimiter) -> None:
    for ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        fail(limiter, ip, times=20)
        assert limiter.retry_after_ms(ip, SHARED_SECRET) is None


def test_loopback_is_counted_when_not_exempt() -> None:
    limiter = AuthRateLimiter(LimiterPolicy(exempt_loopback=False))
    fail(limiter, "127.0.0.1", times=10)
    assert limiter.retry_after_ms("127.0.0.1", SHARED_SECRET) is not None


def test_zero_max_attempts_disables_limiting() -> None:
    limiter = AuthRateLimiter(LimiterPolicy(max_attempts=0))
    fail(limiter, REMOTE, times=50)
    assert limiter.retry_after_ms(REMOTE, SHARED_SECRET) is None


def test_ips_are_independent(limiter: AuthRateLimiter) -> None:
    fail(limiter, REMOTE, times=10)
    assert limiter.retry_after_ms(OTHER, SHARED_SECRET) is None


def test_shared_secret_and_device_token_buckets_are_independent(limiter: AuthRateLimiter) -> None:
    fail(limiter, REMOTE, SHARED_SECRET, times=10)
    assert limiter.retry_after_ms(REMOTE, SHARED_SECRET) is not None
    assert limiter.retry_after_ms(REMOTE, DEVICE_TOKEN) is None
    fail(limiter, OTHER, DEVICE_TOKEN, times=10)
    assert limiter.retry_after_ms(OTHER, DEVICE_TOKEN) is not None
    assert limiter.retry_after_ms(OTHER, SHARED_SECRET) is None


def test_reset_clears_only_its_own_bucket(limiter: AuthRateLimiter) -> None:
    fail(limiter, REMOTE, SHARED_SECRET, times=9)
    fail(limiter, REMOTE, DEVICE_TOKEN, times=9)
    limiter.reset(REMOTE, SHARED_SECRET)
    fail(limiter, REMOTE, SHARED_SECRET, times=1)
    assert limiter.retry_after_ms(REMOTE, SHARED_SECRET) is None, "reset started the count again"
    fail(limiter, REMOTE, DEVICE_TOKEN, times=1)
    assert limiter.retry_after_ms(REMOTE, DEVICE_TOKEN) is not None, "the other bucket kept its count"


def test_reset_clears_only_its_own_ip(limiter: AuthRateLimiter) -> None:
    fail(limiter, REMOTE, times=9)
    fail(limiter, OTHER, times=9)
    limiter.reset(OTHER, SHARED_SECRET)
    fail(limiter, REMOTE, times=1)
    assert limiter.retry_after_ms(REMOTE, SHARED_SECRET) is not None


def test_blank_ip_is_one_unknown_bucket(limiter: AuthRateLimiter) -> None:
    fail(limiter, "", times=10)
    assert limiter.retry_after_ms("", SHARED_SECRET) is not None
    assert limiter.retry_after_ms("unknown", SHARED_SECRET) is not None
