"""The quotas a request passes before it runs, whichever store keeps them.

    admit(tenant)          executions per second and CPU seconds per minute (rates.py);
                           QuotaExceeded at once when over
    slot(tenant, limit)    one of the tenant's concurrent executions, held for the body;
                           QuotaExceeded at once when none is free
    charge_cpu(tenant, s)  an execution's measured CPU time, after it finished

`local.LocalQuotas` keeps them in this process (one node, the embedded default); with
`--redis-url` `sandboxd.cluster.quotas.RedisQuotas` keeps them in Redis for the whole cluster
and falls back to a `LocalQuotas` while Redis is unreachable."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from ..tenants.model import Tenant


class Quotas(Protocol):
    def admit(self, tenant: Tenant) -> None: ...

    def slot(self, tenant: str, limit: int) -> AbstractContextManager[None]: ...

    def charge_cpu(self, tenant: str, cpu_s: float) -> None: ...
