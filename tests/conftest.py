"""Shared fixtures: one real warm pool for the session, and the leftover check.

Every test module that needs the engine uses `pool` (session-scoped, both runtimes) or makes
its own Pool and closes it. At the end of the session nothing may remain: no worker or zygote
process, no cgroup named like a worker's, no `sandboxd` cgroup parent, no temp dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest

from sandboxd_pool import Pool, PoolConfig

CGROUP_DIRS = (
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/pids",
    "/sys/fs/cgroup/cpu",
    "/sys/fs/cgroup/cpuacct",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup",
)


def sandboxd_cgroups() -> list[str]:
    found = []
    for base in CGROUP_DIRS:
        path = os.path.join(base, "sandboxd")
        if os.path.isdir(path):
            found.append(path)
    return found


def sandbox_processes() -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "sandboxd_pool._in_zygote" in cmd or "/opt/sandboxd/" in cmd:
            out.append(proc)
    return out


@pytest.fixture(scope="session")
def pool() -> Iterator[Pool]:
    with Pool(PoolConfig(warm_workers_per_runtime=2, max_concurrent_executions=8)) as p:
        assert p.wait_until_ready(60), p.health()
        yield p


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    yield
    leftovers = [p.pid for p in sandbox_processes()]
    cgroups = sandboxd_cgroups()
    assert not leftovers, f"sandbox processes left behind: {leftovers}"
    assert not cgroups, f"cgroups left behind: {cgroups}"
