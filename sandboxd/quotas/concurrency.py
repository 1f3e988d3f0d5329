"""Node-local tenant quotas: executions running at once per tenant.

A synchronous request over its tenant's limit is rejected at once (RESOURCE_EXHAUSTED) rather
than queued, so that one tenant cannot fill the node's queue; the retry hint is the tenant's
recent typical execution time, when a slot is likely to be free again. Asynchronous jobs
(sandboxd.jobs.embedded) take the same slots with `try_acquire`/`release` and wait in their queue
instead; they learn that a slot was freed from the listeners added with `on_release`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from ..errors import QuotaExceeded

MIN_RETRY_S = 0.05
MAX_RETRY_S = 5.0
EWMA_WEIGHT = 0.2


class ConcurrencyQuota:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._typical_s: dict[str, float] = {}
        self._listeners: list[Callable[[str], None]] = []

    def running(self, tenant: str) -> int:
        with self._lock:
            return self._running.get(tenant, 0)

    def on_release(self, listener: Callable[[str], None]) -> None:
        """Call `listener(tenant)` after each release (outside the quota's lock)."""
        with self._lock:
            self._listeners.append(listener)

    def try_acquire(self, tenant: str, limit: int) -> bool:
        """Take one of the tenant's slots if one is free; pair with `release`."""
        return self._acquire(tenant, limit) is None

    def _acquire(self, tenant: str, limit: int) -> QuotaExceeded | None:
        """None when a slot was taken, else the error that explains why not."""
        with self._lock:
            running = self._running.get(tenant, 0)
            if running >= limit:
                retry = min(MAX_RETRY_S, max(MIN_RETRY_S, self._typical_s.get(tenant, 0.0)))
                return QuotaExceeded(
                    f"tenant:{tenant}:concurrent_executions",
                    f"tenant {tenant!r} already runs {running} executions, its limit "
                    f"(max_concurrent_executions) is {limit}",
                    retry,
                )
            self._running[tenant] = running + 1
            return None

    def release(self, tenant: str, took_s: float | None) -> None:
        """Give back a slot held for `took_s` seconds (the retry hint learns from it; None: a
        slot taken for a job that was gone by then, which ran nothing)."""
        with self._lock:
            self._running[tenant] -= 1
            if not self._running[tenant]:
                del self._running[tenant]
            if took_s is not None:
                old = self._typical_s.get(tenant, took_s)
                self._typical_s[tenant] = old + EWMA_WEIGHT * (took_s - old)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(tenant)

    @contextlib.contextmanager
    def slot(self, tenant: str, limit: int) -> Iterator[None]:
        """Hold a slot for the body; QuotaExceeded at once when the tenant has none free."""
        error = self._acquire(tenant, limit)
        if error is not None:
            raise error
        started = time.monotonic()
        try:
            yield
        finally:
            self.release(tenant, time.monotonic() - started)
