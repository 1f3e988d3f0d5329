"""The tenants file, loaded at start and again on SIGHUP (`TenantsFile.reload`).

A reload reads and validates the whole file (file.py, the same checks as at start) and
only then swaps it in: calls authenticated after the swap see the new tenants, keys and
limits. A file that does not load (bad TOML, a bad field, two tenants with one key, missing
or unreadable) changes nothing: the tenants loaded before keep being served and the log says
why (`tenants file not reloaded`, with the file, tenant and field in `error`).

What a reload does not touch:
- executions already admitted (running, or queued by Submit) finish with the limits and
  concurrency limit they were admitted with, also those of a tenant that was removed;
- quota state is kept by tenant name: executions still running count against the tenant's
  new `max_concurrent_executions`, and its rate bucket and CPU minute carry on under its new
  rates (with `--redis-url` they are in Redis and shared by the nodes as before);
- a removed tenant's key is refused at once (UNAUTHENTICATED), also for GetExecution and
  CancelExecution of its executions; adding it back under the same name finds them again."""

from __future__ import annotations

import logging

from . import Tenant, TenantDirectory, TenantsFileError, load_tenants
from .auth import Authenticator

log = logging.getLogger("sandboxd.tenants")


class TenantsFile:
    def __init__(self, path: str) -> None:
        """Load `path` (raises TenantsFileError: the daemon does not start without it)."""
        self.path = path
        self.tenants = load_tenants(path)
        self.directory = TenantDirectory(self.tenants)
        self._warn_if_empty()
        log.info(
            "tenants loaded", extra={"fields": {"file": path, "tenants": sorted(self.tenants)}}
        )

    def reload(self, auth: Authenticator) -> bool:
        """Load the file again and hand it to `auth`; False (and an error log) if it does not
        load, in which case nothing changes."""
        try:
            tenants = load_tenants(self.path)
            directory = TenantDirectory(tenants)
        except (TenantsFileError, ValueError) as e:
            log.error(
                "tenants file not reloaded: still serving the tenants loaded before",
                extra={
                    "fields": {"file": self.path, "error": str(e), "tenants": sorted(self.tenants)}
                },
            )
            return False
        old = self.tenants
        auth.use(directory)
        self.tenants, self.directory = tenants, directory
        log.info(
            "tenants reloaded",
            extra={
                "fields": {
                    "file": self.path,
                    "tenants": sorted(tenants),
                    "added": sorted(tenants.keys() - old.keys()),
                    "removed": sorted(old.keys() - tenants.keys()),
                    "changed": _changed(old, tenants),
                }
            },
        )
        self._warn_if_empty()
        return True

    def _warn_if_empty(self) -> None:
        if not self.tenants:
            log.warning(
                "the tenants file has no tenants: every call will be UNAUTHENTICATED",
                extra={"fields": {"file": self.path}},
            )


def _changed(old: dict[str, Tenant], new: dict[str, Tenant]) -> list[str]:
    return sorted(name for name in old.keys() & new.keys() if old[name] != new[name])
