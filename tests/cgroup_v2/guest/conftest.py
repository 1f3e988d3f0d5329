"""Inside the cgroup v2 VM only (tests/cgroup_v2/conftest.py collects this directory only
there): refuse to run anywhere else, and give the tests a pool on the v2 hierarchy."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandboxd_pool import Pool, PoolConfig

from ..guest_env import GUEST_MARKER

CGROUP2 = "/sys/fs/cgroup"
CREATED_INSIDE = "cgroup v2: workers are created in their cgroups (CLONE_INTO_CGROUP)"


def _cgroup_mounts() -> list[tuple[str, str]]:
    with open("/proc/self/mountinfo") as f:
        return [
            (line.split(" - ")[1].split()[0], line.split()[4]) for line in f if " - cgroup" in line
        ]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(GUEST_MARKER) != "1":
        raise pytest.UsageError(
            "tests/cgroup_v2/guest runs only inside the cgroup v2 VM: "
            "run `python -m pytest tests/cgroup_v2` on the host"
        )
    mounts = _cgroup_mounts()
    if mounts != [("cgroup2", CGROUP2)]:
        raise pytest.UsageError(f"expected only cgroup2 at {CGROUP2}, found {mounts}")


def cgroup_of(pid: int) -> str:
    """The process's cgroup, as /proc/PID/cgroup gives it ("0::PATH" on v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 and lines[0].startswith("0::"), lines  # v2 only
    return lines[0][3:]


def cgroup_tree() -> set[str]:
    """Every cgroup directory under the mount."""
    return {d for d, _dirs, _files in os.walk(CGROUP2)}


@pytest.fixture(scope="session", autouse=True)
def no_cgroup_left_behind() -> Iterator[None]:
    before = cgroup_tree()
    yield
    assert cgroup_tree() == before


@pytest.fixture(scope="session")
def v2_pool() -> Iterator[Pool]:
    """Both runtimes on the unified hierarchy (the session pool of tests/conftest.py is not
    used: its parent cgroup is the default name, which the lifecycle tests check separately)."""
    config = PoolConfig(
        warm_workers_per_runtime=2, max_concurrent_executions=4, cgroup_parent="sandboxd-v2"
    )
    with Pool(config) as pool:
        assert pool.cgroups.version == 2, pool.cgroup_warning
        assert pool.wait_until_ready(120), pool.health()
        yield pool
