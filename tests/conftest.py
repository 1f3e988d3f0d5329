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


@pytest.fixture(scope="session")
def pool() -> Iterator[Pool]:
    with Pool(PoolConfig(warm_workers_per_runtime=2, max_concurrent_executions=8)) as p:
        assert p.wait_until_ready(60), p.health()
        yield p


def zygotes_on_machine() -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "sandboxd_pool._in_zygote" in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the session: no process of ours, no worker cgroup, no `sandboxd` cgroup parent.

    Other sandboxd instances may run on the same machine (a developer's second checkout), so
    processes are checked among this session's descendants, and the parent cgroup only while
    no other zygote exists and if it did not exist before the session."""
    parents_before = sandboxd_cgroups()
    yield
    descendants = psutil.Process().children(recursive=True)
    assert not descendants, f"processes left behind: {[p.pid for p in descendants]}"
    stale = []
    for parent in sandboxd_cgroups():
        for name in os.listdir(parent):
            owner = name[1:].split("-", 1)[0]
            path = os.path.join(parent, name)
            if not os.path.isdir(path):
                continue
            dead_owner = owner.isdigit() and not psutil.pid_exists(int(owner))
            # a worker cgroup of a dead zygote, or anything at all (a probe) once no pool runs
            if (name.startswith("z") and dead_owner) or not zygotes_on_machine():
                stale.append(path)
    assert not stale, f"worker cgroups left behind: {stale}"
    if not zygotes_on_machine() and not parents_before:
        assert not sandboxd_cgroups(), f"cgroups left behind: {sandboxd_cgroups()}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that do not use the session pool run first, before it exists: some of them (the
    raw seccomp tests) check that they leave no fd and no child behind, which a live pool's
    background threads, opening and closing worker fds, would make meaningless.
    The suites that start daemons run last (e2e, cluster, fuzz, faults, soak, deploy): a
    daemon is a process tree of its own and its clients leave threads in this process; the container tests (podman: a
    Debian base, an image build) and the cgroup v2 VM (tests/cgroup_v2) after them."""
    items.sort(key=_order)


# Suites that start daemons (and leave gRPC channels, redis clients and their threads in this
# process): after everything that checks this process's own fds and children.
_DAEMON_SUITES = ("e2e", "cluster", "fuzz", "faults", "soak", "deploy")


def _order(item: pytest.Item) -> int:
    if "container/" in item.nodeid or "test_pod_in_podman.py" in item.nodeid:
        return 3  # podman (tests/container, and the Deployment's pod in tests/deploy)
    if "tests/cgroup_v2/" in item.nodeid or item.nodeid.startswith("cgroup_v2/"):
        return 3  # a VM of its own
    for suite in _DAEMON_SUITES:
        if f"tests/{suite}/" in item.nodeid or item.nodeid.startswith(f"{suite}/"):
            return 2
    return 1 if "pool" in getattr(item, "fixturenames", ()) else 0
