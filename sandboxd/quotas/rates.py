"""Node-local rate and CPU-time quotas: the arithmetic the Redis scripts repeat cluster-wide.

Both are checked when a request is admitted (Execute, ExecuteStream, Submit) and refuse it
with QuotaExceeded (RESOURCE_EXHAUSTED + RetryInfo); nothing waits.

- `max_executions_per_second`: a token bucket per tenant holding at most
  `burst(rate) = max(1, rate)` tokens, refilled at `rate` per second; each admitted request
  takes one. The retry hint is when the next token is there.
- `max_cpu_seconds_per_minute`: a sliding window over fixed minutes: the CPU seconds charged
  in the current minute plus the previous minute's, weighted by how much of it still lies
  inside the last 60 s. A request is refused while that sum is at or above the limit; the
  charge is the execution's measured CPU time, added when it finishes (so one execution may
  go over; the next ones wait). The retry hint is when the sum falls below the limit if
  nothing else is charged.

`sandboxd/cluster/scripts/rate_take.lua` and `cpu_check.lua` compute the same with the Redis clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import QuotaExceeded

WINDOW_S = 60.0
MIN_RETRY_S = 0.05
MAX_RETRY_S = 60.0


def burst(rate_per_s: float) -> float:
    return max(1.0, rate_per_s)


@dataclass(frozen=True)
class Bucket:
    tokens: float
    at_s: float


def take_token(bucket: Bucket | None, rate_per_s: float, now_s: float) -> tuple[Bucket, float]:
    """(the bucket after the attempt, 0 if a token was taken else seconds until one is)."""
    capacity = burst(rate_per_s)
    tokens = capacity if bucket is None else bucket.tokens
    since_s = 0.0 if bucket is None else max(0.0, now_s - bucket.at_s)
    tokens = min(capacity, tokens + since_s * rate_per_s)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now_s), 0.0
    return Bucket(tokens, now_s), (1.0 - tokens) / rate_per_s


def window_of(now_s: float) -> int:
    return int(now_s // WINDOW_S)


def cpu_used_s(current_s: float, previous_s: float, now_s: float) -> float:
    """CPU seconds counted against the last 60 s (the sliding-window estimate)."""
    elapsed = now_s - window_of(now_s) * WINDOW_S
    return current_s + previous_s * (1.0 - elapsed / WINDOW_S)


def cpu_retry_s(current_s: float, previous_s: float, now_s: float, limit_s: float) -> float:
    """0 when under the limit, else seconds until the estimate falls below it."""
    if cpu_used_s(current_s, previous_s, now_s) < limit_s:
        return 0.0
    elapsed = now_s - window_of(now_s) * WINDOW_S
    if current_s >= limit_s or previous_s <= 0:
        return WINDOW_S - elapsed  # the current minute must become the previous one
    # previous * (1 - t / 60) < limit - current  <=>  t > 60 * (1 - (limit - current) / previous)
    t = WINDOW_S * (1.0 - (limit_s - current_s) / previous_s)
    return max(0.0, t - elapsed)


def clamp_retry_s(retry_s: float) -> float:
    return min(MAX_RETRY_S, max(MIN_RETRY_S, retry_s))


def rate_exceeded(tenant: str, rate_per_s: float, retry_s: float) -> QuotaExceeded:
    return QuotaExceeded(
        f"tenant:{tenant}:executions_per_second",
        f"tenant {tenant!r} started executions faster than its limit "
        f"(max_executions_per_second) of {rate_per_s:g} per second",
        clamp_retry_s(retry_s),
    )


def cpu_exceeded(tenant: str, limit_s: float, retry_s: float) -> QuotaExceeded:
    return QuotaExceeded(
        f"tenant:{tenant}:cpu_seconds_per_minute",
        f"tenant {tenant!r} used its CPU time quota (max_cpu_seconds_per_minute) of "
        f"{limit_s:g} CPU seconds in the last minute",
        clamp_retry_s(retry_s),
    )


class LocalRates:
    """The two quotas for this node only (no Redis, or Redis unreachable)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}
        self._cpu: dict[tuple[str, int], float] = {}  # (tenant, minute) -> CPU seconds

    def take(self, tenant: str, rate_per_s: float) -> None:
        with self._lock:
            bucket, retry_s = take_token(self._buckets.get(tenant), rate_per_s, self._clock())
            self._buckets[tenant] = bucket
        if retry_s > 0:
            raise rate_exceeded(tenant, rate_per_s, retry_s)

    def check_cpu(self, tenant: str, limit_s: float) -> None:
        now = self._clock()
        window = window_of(now)
        with self._lock:
            current = self._cpu.get((tenant, window), 0.0)
            previous = self._cpu.get((tenant, window - 1), 0.0)
        if cpu_used_s(current, previous, now) >= limit_s:
            raise cpu_exceeded(tenant, limit_s, cpu_retry_s(current, previous, now, limit_s))

    def charge_cpu(self, tenant: str, cpu_s: float) -> None:
        window = window_of(self._clock())
        with self._lock:
            key = (tenant, window)
            self._cpu[key] = self._cpu.get(key, 0.0) + cpu_s
            for stale in [k for k in self._cpu if k[1] < window - 1]:
                del self._cpu[stale]
