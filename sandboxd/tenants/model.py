"""Tenants: who may call sandboxd, with which API key, runtimes, limits and concurrency.

The model (`Tenant`), the directory that finds a tenant by its API key, and the keys
themselves. The tenants file is read by file.py and edited by edit.py; see the package doc."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sandboxd_pool.egress import EgressPolicy
from sandboxd_pool.types import CEILING_LIMITS, DEFAULT_LIMITS, Limits, Runtime

DEFAULT_MAX_CONCURRENT_EXECUTIONS = 8
DEFAULT_TENANT_MAX_CONCURRENT_EXECUTIONS = 16
LIMIT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Limits))
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class TenantsFileError(ValueError):
    """The tenants file (or an edit of it) is invalid. The message says where and why."""

    def __init__(
        self, path: str, message: str, *, tenant: str | None = None, field: str | None = None
    ) -> None:
        where = f"{path}: " + (f"tenant {tenant!r}: " if tenant is not None else "")
        super().__init__(where + message)
        self.reason = message  # without the file and the tenant
        self.path = path
        self.tenant = tenant
        self.field = field


@dataclass(frozen=True)
class Tenant:
    name: str
    key_sha256: str  # hex sha256 of the API key; "" only for the keyless zero-config tenant
    runtimes: frozenset[Runtime]
    default_limits: Limits  # complete: overrides over DEFAULT_LIMITS, clamped to the ceiling
    ceiling_limits: Limits  # complete: overrides over CEILING_LIMITS, each <= CEILING_LIMITS
    max_concurrent_executions: int = DEFAULT_MAX_CONCURRENT_EXECUTIONS
    network_allowed: bool = False
    max_executions_per_second: float | None = None  # None: no rate limit
    max_cpu_seconds_per_minute: float | None = None  # None: no CPU-time quota
    # None: the daemon's setting (--max-calls-per-tenant, --max-queued-jobs-per-tenant,
    # --async-max-bytes-per-tenant)
    max_open_calls: int | None = None  # calls open at once on a node
    max_queued_jobs: int | None = None  # async executions accepted and not finished
    max_async_bytes: int | None = None  # async memory: requests with room for output, results
    # What the tenant's programs may reach through the egress proxy; None: nothing (the
    # proxy's port is refused). Its headers are secrets: out of repr (EgressHeader).
    egress: EgressPolicy | None = None
    # The environments (sandboxd.environments) the tenant's requests may name; None: every
    # one the node has (the keyless zero-config tenant only).
    environments: frozenset[str] | None = frozenset()

    def may_use_environment(self, name: str) -> bool:
        return self.environments is None or name in self.environments

    def effective_limits(self, requested: Limits) -> Limits:
        """The limits an execution runs with: a zero field takes the tenant's default, then
        every field is clamped to the tenant's ceiling (a larger request is lowered, never
        rejected). Negative values are passed through for request validation to reject."""
        merged = requested.merged_over(self.default_limits)
        return _clamp(merged, self.ceiling_limits)


def _clamp(limits: Limits, ceiling: Limits) -> Limits:
    return Limits(**{f: min(getattr(limits, f), getattr(ceiling, f)) for f in LIMIT_FIELDS})


def hash_key(key: str) -> str:
    """The hex sha256 of an API key.

    A fast, unsalted hash is right here: keys are 32 random bytes from `secrets` (see
    `new_key`), so there is nothing to brute-force, and authentication stays one hash plus a
    dict lookup. Slow password hashes (bcrypt, scrypt) are for low-entropy human secrets.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh API key: "sbx_" and 32 random bytes, URL-safe base64 (43 characters)."""
    return "sbx_" + secrets.token_urlsafe(32)


def default_tenant() -> Tenant:
    """The keyless tenant used when no tenants file is configured (zero-config, one node)."""
    return Tenant(
        name="default",
        key_sha256="",
        runtimes=frozenset(Runtime),
        default_limits=_clamp(DEFAULT_LIMITS, CEILING_LIMITS),
        ceiling_limits=CEILING_LIMITS,
        max_concurrent_executions=DEFAULT_TENANT_MAX_CONCURRENT_EXECUTIONS,
        environments=None,
    )


class TenantDirectory:
    """Looks tenants up by API key.

    A directory is either keyed (every tenant has a key hash, all distinct) or keyless: the
    single zero-config tenant from `default_tenant()`, which every caller is, whatever key
    it sends (authentication is off). Mixing the two would let anyone in, so it is refused.
    """

    def __init__(self, tenants: Mapping[str, Tenant]) -> None:
        self._by_name: dict[str, Tenant] = {}
        self._by_hash: dict[str, Tenant] = {}
        self._keyless: Tenant | None = None
        for name, tenant in tenants.items():
            if name != tenant.name:
                raise ValueError(f"tenant {tenant.name!r} is filed under the name {name!r}")
            if not tenant.key_sha256:
                if len(tenants) != 1:
                    raise ValueError(
                        f"tenant {name!r} has no key; a keyless tenant must be the only one"
                    )
                self._keyless = tenant
            else:
                other = self._by_hash.get(tenant.key_sha256)
                if other is not None:
                    raise ValueError(f"tenants {other.name!r} and {name!r} have the same key")
                self._by_hash[tenant.key_sha256] = tenant
            self._by_name[name] = tenant

    @property
    def requires_key(self) -> bool:
        """False for the keyless zero-config directory (authentication is off)."""
        return self._keyless is None

    def authenticate(self, api_key: str) -> Tenant | None:
        """The tenant owning `api_key`, or None. The lookup is by sha256, so comparing the
        hashes in constant time buys nothing: an attacker cannot steer the hash's prefix."""
        if self._keyless is not None:
            return self._keyless
        if not api_key:
            return None
        return self._by_hash.get(hash_key(api_key))

    def get(self, name: str) -> Tenant | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._by_name[name] for name in self.names())
