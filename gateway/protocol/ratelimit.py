"""Auth brute-force limiter (auth-and-pairing.md §1.8, README D5). Counters live in the Django
cache so every gateway process sees the same ones; incr/add are atomic there (LocMem and Redis)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.core.cache import cache

from .netaddr import is_loopback

SHARED_SECRET = "shared-secret"
DEVICE_TOKEN = "device-token"


@dataclass(frozen=True)
class LimiterPolicy:
    max_attempts: int = 10
    window_ms: int = 60_000
    lockout_ms: int = 300_000
    exempt_loopback: bool = True


class AuthRateLimiter:
    def __init__(self, policy: LimiterPolicy):
        self.policy = policy

    def _keys(self, ip: str, bucket: str) -> tuple[str, str]:
        ip = ip or "unknown"
        return f"authrl:fail:{bucket}:{ip}", f"authrl:lock:{bucket}:{ip}"

    def _exempt(self, ip: str) -> bool:
        return self.policy.max_attempts <= 0 or (self.policy.exempt_loopback and is_loopback(ip))

    def retry_after_ms(self, ip: str, bucket: str) -> int | None:
        """Milliseconds until the lock lifts, or None when not locked."""
        if self._exempt(ip):
            return None
        _, lock_key = self._keys(ip, bucket)
        locked_until = cache.get(lock_key)
        if locked_until is None:
            return None
        left = int(locked_until - time.time() * 1000)
        return left if left > 0 else None

    def record_failure(self, ip: str, bucket: str) -> None:
        if self._exempt(ip) or self.retry_after_ms(ip, bucket) is not None:
            return
        fail_key, lock_key = self._keys(ip, bucket)
        cache.add(fail_key, 0, timeout=math.ceil(self.policy.window_ms / 1000))
        try:
            count = cache.incr(fail_key)
        except ValueError:  # expired between add and incr
            cache.add(fail_key, 1, timeout=math.ceil(self.policy.window_ms / 1000))
            count = 1
        if count >= self.policy.max_attempts:
            locked_until = time.time() * 1000 + self.policy.lockout_ms
            cache.set(lock_key, locked_until, timeout=math.ceil(self.policy.lockout_ms / 1000))
            cache.delete(fail_key)

    def reset(self, ip: str, bucket: str) -> None:
        fail_key, _ = self._keys(ip, bucket)
        cache.delete(fail_key)
