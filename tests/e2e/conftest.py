"""Fixtures for the end-to-end tests: real `sandboxd serve` processes on port 0.

`zero_daemon`: zero-config (no tenants file, one keyless tenant `default`).
`tenant_daemon`: a tenants file with
    alpha  python only, at most 1 execution at once, wall-time ceiling 3000 ms,
           default wall time 2000 ms
    beta   both runtimes, built-in defaults, at most 4 at once
Both are session-scoped and drained (SIGTERM) at the end; the drain must exit 0.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sandboxd_client import Client

from .daemon import Daemon, start, tenants_file


@dataclass
class TenantDaemon:
    daemon: Daemon
    keys: dict[str, str]
    tenants_path: str

    def client(self, tenant: str | None) -> Client:
        return Client(self.daemon.address, api_key=self.keys[tenant] if tenant else None)


@pytest.fixture(scope="session")
def zero_daemon() -> Iterator[Daemon]:
    daemon = start()
    yield daemon
    assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])


@pytest.fixture(scope="session")
def tenant_daemon() -> Iterator[TenantDaemon]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-e2e-") as tmp:
        path = os.path.join(tmp, "tenants.toml")
        keys = tenants_file(
            path,
            {
                "alpha": {
                    "runtimes": ["python"],
                    "max_concurrent_executions": 1,
                    "ceiling_limits": {"wall_time_ms": 3000},
                    "default_limits": {"wall_time_ms": 2000},
                },
                "beta": {"max_concurrent_executions": 4},
            },
        )
        daemon = start(["--tenants", path])
        yield TenantDaemon(daemon, keys, path)
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])


@pytest.fixture()
def client(zero_daemon: Daemon) -> Iterator[Client]:
    with Client(zero_daemon.address) as c:
        yield c
