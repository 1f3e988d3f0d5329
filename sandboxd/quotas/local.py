"""The quotas of protocol.py kept in this process: one node, the embedded default."""

from __future__ import annotations

from contextlib import AbstractContextManager

from ..tenants.model import Tenant
from .concurrency import ConcurrencyQuota
from .rates import LocalRates


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
