"""The quotas a request passes before it runs, whichever store keeps them.

    admit(tenant)          executions per second and CPU seconds per minute (rate_quotas.py);
                           QuotaExceeded at once when over
    slot(tenant, limit)    one of the tenant's concurrent executions, held for the body;
                           QuotaExceeded at once when none is free
    charge_cpu(tenant, s)  an execution's measured CPU time, after it finished

`LocalQuotas` keeps them in this process (one node, the embedded default); with `--redis-url`
`quotas_redis.RedisQuotas` keeps them in Redis for the whole cluster and falls back to a
`LocalQuotas` while Redis is unreachable."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from .quotas import ConcurrencyQuota
from .rate_quotas import LocalRates
from .tenants import Tenant


class Quotas(Protocol):
    def admit(self, tenant: Tenant) -> None: ...

    def slot(self, tenant: str, limit: int) -> AbstractContextManager[None]: ...

    def charge_cpu(self, tenant: str, cpu_s: float) -> None: ...


class LocalQuotas:
    def __init__(self, concurrency: ConcurrencyQuota | None = None) -> None:
        self.concurrency = concurrency or ConcurrencyQuota()
        self.rates = LocalRates()

    def admit(self, tenant: Tenant) -> None:
        if tenant.max_cpu_seconds_per_minute is not None:
            self.rates.check_cpu(tenant.name, tenant.max_cpu_seconds_per_minute)
        if tenant.max_executions_per_second is not None:
            self.rates.take(tenant.name, tenant.max_executions_per_second)

    def slot(self, tenant: str, limit: int) -> AbstractContextManager[None]:
        return self.concurrency.slot(tenant, limit)

    def charge_cpu(self, tenant: str, cpu_s: float) -> None:
        self.rates.charge_cpu(tenant, cpu_s)
