"""Tenants: who may call sandboxd, with which API key, runtimes, limits and concurrency.

Tenants come from a TOML file (docs/operations.md, "Tenants"), read with `tomllib` and validated completely at
load: an unknown key, a wrong type or an out-of-range value is a `TenantsFileError` naming the
file, the tenant and the field, and the daemon refuses to start rather than guess.

    [tenants.acme]
    key_sha256 = "9f86d0..."                 # required: hex sha256 of the API key
    runtimes = ["python", "javascript"]      # optional, default: every runtime
    max_concurrent_executions = 8            # optional, default 8
    max_executions_per_second = 20.0         # optional, default no limit (token bucket)
    max_cpu_seconds_per_minute = 120.0       # optional, default no limit
    max_open_calls = 32                      # optional, default --max-calls-per-tenant
    max_queued_jobs = 100                    # optional, default --max-queued-jobs-per-tenant
    max_async_bytes = 268435456              # optional, default --async-max-bytes-per-tenant
    network_allowed = false                  # optional; true is refused (use egress rules)
    egress = ["api.example.com:443"]         # optional: where the egress proxy may connect
    egress_private_ranges = ["10.0.0.0/8"]   # optional: private ranges opened for egress
    [[tenants.acme.egress_headers]]          # optional, repeated: a header the proxy sets
    host = "api.example.com"
    name = "Authorization"
    value = "Bearer ..."
    environments = ["data"]                  # optional, default none: environments it may name
    [tenants.acme.default_limits]            # optional: used when a request leaves a limit at 0
    wall_time_ms = 5000
    [tenants.acme.ceiling_limits]            # optional: the most a request may ask for
    memory_bytes = 1073741824

API keys are never stored, only their sha256. `add_tenant` and `remove_tenant` edit the file
(atomically, under a lock on its directory); `tomllib` only reads, so they write with the small
serializer in edit.py and re-load what they are about to write before replacing the file.
"""

from .edit import add_tenant, remove_tenant
from .file import load_tenants
from .model import (
    DEFAULT_MAX_CONCURRENT_EXECUTIONS,
    LIMIT_FIELDS,
    Tenant,
    TenantDirectory,
    TenantsFileError,
    default_tenant,
    hash_key,
    new_key,
)

__all__ = [
    "DEFAULT_MAX_CONCURRENT_EXECUTIONS",
    "LIMIT_FIELDS",
    "Tenant",
    "TenantDirectory",
    "TenantsFileError",
    "add_tenant",
    "default_tenant",
    "hash_key",
    "load_tenants",
    "new_key",
    "remove_tenant",
]
