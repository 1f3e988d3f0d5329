"""Cluster-wide tenant quotas in Redis (`--redis-url`), each step one atomic Lua script.

    concurrency   scripts/conc_acquire.lua: a sorted set of leases per tenant, scored by
                  their expiry. A node renews the leases it holds every `lease_s / 3`
                  (conc_renew.lua) and removes them when the execution ends; a node that dies
                  stops renewing, so its leases expire after `lease_s` and cannot hold a
                  tenant's slots forever. A renewal also takes again the leases that are not
                  in their set (expired while Redis was unreachable, or lost with its data),
                  and puts in the slots counted locally during an outage: every running
                  execution counts again, so once Redis is back a tenant gets no new slot
                  until it is under its limit.
    rate          rate_take.lua: the token bucket of sandboxd.quotas.rates with the Redis clock.
    CPU time      cpu_check.lua / cpu_charge.lua: the sliding minute window of sandboxd.quotas.rates.

While Redis is unreachable every quota falls back to this node's `LocalQuotas` (the same
arithmetic, this node only), so synchronous executions keep working; RedisLink logs the
transition once. A lease taken in Redis is given back to Redis (or expires there if Redis is
gone by then); a local slot to the local quota, and to Redis if it was put in there."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import QuotaExceeded
from ..quotas.concurrency import EWMA_WEIGHT, MAX_RETRY_S, MIN_RETRY_S
from ..quotas.local import LocalQuotas
from ..quotas.rates import cpu_exceeded, rate_exceeded
from ..tenants.model import Tenant
from .link import RedisDown, RedisLink

log = logging.getLogger("sandboxd.quotas")


@dataclass(frozen=True)
class Lease:
    tenant: str
    lease_id: str
    taken_at_s: float  # monotonic
    # A node-local slot, taken while Redis was unreachable; the lease id goes into Redis with
    # the first renewal that reaches it.
    local: bool = False


class RedisQuotas:
    def __init__(self, link: RedisLink, local: LocalQuotas, *, lease_s: float) -> None:
        self.link = link
        self.local = local
        self.lease_ms = max(1000, int(lease_s * 1000))
        self._acquire = link.script("conc_acquire")
        self._renew = link.script("conc_renew")
        self._rate = link.script("rate_take")
        self._cpu_check = link.script("cpu_check")
        self._cpu_charge = link.script("cpu_charge")
        self._lock = threading.Lock()
        self._held: dict[str, Lease] = {}  # lease id -> lease, renewed until released
        self._typical_s: dict[str, float] = {}
        self._stop = threading.Event()
        self._renewer = threading.Thread(
            target=self._renew_loop, name="sandboxd-quota-leases", daemon=True
        )
        self._renewer.start()

    # -- Quotas ----------------------------------------------------------------------------------

    def admit(self, tenant: Tenant) -> None:
        try:
            if tenant.max_cpu_seconds_per_minute is not None:
                limit = tenant.max_cpu_seconds_per_minute
                ok, retry = self.link.call(
                    lambda: self._cpu_check(keys=[self._cpu_key(tenant.name)], args=[limit])
                )
                if not int(ok):
                    raise cpu_exceeded(tenant.name, limit, float(retry))
            if tenant.max_executions_per_second is not None:
                rate = tenant.max_executions_per_second
                ok, retry = self.link.call(
                    lambda: self._rate(keys=[self.link.key("rate", tenant.name)], args=[rate])
                )
                if not int(ok):
                    raise rate_exceeded(tenant.name, rate, float(retry))
        except RedisDown:
            self.local.admit(tenant)

    @contextlib.contextmanager
    def slot(self, tenant: str, limit: int) -> Iterator[None]:
        lease = self.try_lease(tenant, limit)
        if isinstance(lease, QuotaExceeded):
            raise lease
        try:
            yield
        finally:
            self.release(lease)

    def charge_cpu(self, tenant: str, cpu_s: float) -> None:
        if cpu_s <= 0:
            return
        try:
            self.link.call(
                lambda: self._cpu_charge(keys=[self._cpu_key(tenant)], args=[f"{cpu_s:.6f}"])
            )
        except RedisDown:
            self.local.charge_cpu(tenant, cpu_s)

    # -- leases (also used by jobs.RedisJobs) ----------------------------------------------

    def try_lease(self, tenant: str, limit: int) -> Lease | QuotaExceeded:
        """A lease on one of the tenant's slots, or the error explaining why there is none."""
        lease_id = uuid.uuid4().hex
        try:
            taken, running = self.link.call(
                lambda: self._acquire(
                    keys=[self.link.key("conc", tenant)], args=[lease_id, limit, self.lease_ms]
                )
            )
        except RedisDown:
            if not self.local.concurrency.try_acquire(tenant, limit):
                return self._exceeded(tenant, self.local.concurrency.running(tenant), limit)
            lease = Lease(tenant, lease_id, time.monotonic(), local=True)
        else:
            if not int(taken):
                return self._exceeded(tenant, int(running), limit)
            lease = Lease(tenant, lease_id, time.monotonic())
        with self._lock:
            self._held[lease_id] = lease
        return lease

    def release(self, lease: Lease) -> None:
        took_s = time.monotonic() - lease.taken_at_s
        with self._lock:
            old = self._typical_s.get(lease.tenant, took_s)
            self._typical_s[lease.tenant] = old + EWMA_WEIGHT * (took_s - old)
            self._held.pop(lease.lease_id, None)
        if lease.local:
            self.local.concurrency.release(lease.tenant, took_s)
            if not self.link.up:  # not in Redis (or, put in before it went again, expiring)
                return
        with contextlib.suppress(RedisDown):  # else it expires in Redis after lease_s
            self._forget(lease)

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._stop.set()
        self._renewer.join(timeout=5)

    # -- internals -------------------------------------------------------------------------------

    def _exceeded(self, tenant: str, running: int, limit: int) -> QuotaExceeded:
        with self._lock:
            typical = self._typical_s.get(tenant, 0.0)
        where = "across the cluster" if self.link.up else "on this node (Redis unavailable)"
        return QuotaExceeded(
            f"tenant:{tenant}:concurrent_executions",
            f"tenant {tenant!r} already runs {running} executions {where}, its limit "
            f"(max_concurrent_executions) is {limit}",
            min(MAX_RETRY_S, max(MIN_RETRY_S, typical)),
        )

    def _cpu_key(self, tenant: str) -> str:
        return self.link.key("cpu", tenant) + ":"

    def _renew_leases(self, leases: list[Lease]) -> int:
        """Renew `leases` in Redis, taking again those that are not there; how many were not."""
        keys = [self.link.key("conc", lease.tenant) for lease in leases]
        args: list[str | int] = [self.lease_ms, *(lease.lease_id for lease in leases)]
        retaken = int(self.link.call(lambda: self._renew(keys=keys, args=args)))
        # A lease released while the renewal ran was put back by it: remove it again (its
        # release removed it from _held before its own ZREM, so one of the two comes last).
        with self._lock:
            gone = [lease for lease in leases if lease.lease_id not in self._held]
        for lease in gone:
            self._forget(lease)
        return retaken

    def _forget(self, lease: Lease) -> None:
        key = self.link.key("conc", lease.tenant)
        self.link.call(lambda: self.link.client.zrem(key, lease.lease_id))

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_ms / 3000):
            with self._lock:
                leases = list(self._held.values())
            if not leases:
                continue
            try:
                retaken = self._renew_leases(leases)
            except RedisDown:
                continue
            except Exception:
                log.exception("renewing concurrency leases failed")
                continue
            if retaken:
                log.warning(
                    "concurrency leases taken again after Redis was unreachable: executions "
                    "still running count against their tenant's limit again",
                    extra={
                        "fields": {
                            "leases_retaken": retaken,
                            "tenants": sorted({lease.tenant for lease in leases}),
                        }
                    },
                )
