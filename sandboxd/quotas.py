"""Node-local tenant quotas: executions running at once per tenant.

A request over its tenant's limit is rejected at once (RESOURCE_EXHAUSTED) rather than queued,
so that one tenant cannot fill the node's queue; the retry hint is the tenant's recent typical
execution time, when a slot is likely to be free again."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from .errors import QuotaExceeded

MIN_RETRY_S = 0.05
MAX_RETRY_S = 5.0
EWMA_WEIGHT = 0.2


class ConcurrencyQuota:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._typical_s: dict[str, float] = {}

    def running(self, tenant: str) -> int:
        with self._lock:
            return self._running.get(tenant, 0)

    @contextlib.contextmanager
    def slot(self, tenant: str, limit: int) -> Iterator[None]:
        with self._lock:
            running = self._running.get(tenant, 0)
            if running >= limit:
                retry = min(MAX_RETRY_S, max(MIN_RETRY_S, self._typical_s.get(tenant, 0.0)))
                raise QuotaExceeded(
                    f"tenant:{tenant}:concurrent_executions",
                    f"tenant {tenant!r} already runs {running} executions, its limit "
                    f"(max_concurrent_executions) is {limit}",
                    retry,
                )
            self._running[tenant] = running + 1
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            with self._lock:
                self._running[tenant] -= 1
                if not self._running[tenant]:
                    del self._running[tenant]
                old = self._typical_s.get(tenant, took)
                self._typical_s[tenant] = old + EWMA_WEIGHT * (took - old)
