"""The start-up sweep of a pool's cgroup parent: a `probe-PID` cgroup left by a process that
died while probing the hierarchy (CgroupSetup.detect) is removed like a dead zygote's worker
cgroups; one whose process still lives is left alone. A parent of its own, so that other
pools on the machine are not touched."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sandboxd_pool import Pool, PoolConfig, Runtime
from sandboxd_pool.jail.cgroups import CgroupSetup, WorkerCgroup


@pytest.fixture()
def parent() -> Iterator[CgroupSetup]:
    name = f"sandboxd-sweep-{os.getpid()}"
    setup = CgroupSetup.detect(None, name)
    if not setup.version:
        pytest.fail(f"this test needs a writable cgroup hierarchy: {setup.reason}")
    yield setup
    for path in setup.parents.values():
        if os.path.isdir(path):
            for entry in os.listdir(path):
                if os.path.isdir(os.path.join(path, entry)):
                    os.rmdir(os.path.join(path, entry))
            os.rmdir(path)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def exists(cgroup: WorkerCgroup) -> list[bool]:
    return [os.path.isdir(path) for path in cgroup.paths.values()]


def test_a_stale_probe_is_swept_and_a_live_one_kept(
    parent: CgroupSetup, caplog: pytest.LogCaptureFixture
) -> None:
    stale = parent.worker(f"probe-{dead_pid()}")
    stale.create()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        live = parent.worker(f"probe-{alive.pid}")
        live.create()
        try:
            config = PoolConfig(
                warm_workers_per_runtime=1,
                runtimes=(Runtime.PYTHON,),
                cgroup_parent=os.path.basename(next(iter(parent.parents.values()))),
            )
            with caplog.at_level(logging.WARNING, "sandboxd_pool.zygote"), Pool(config):
                assert not any(exists(stale)), stale
                assert all(exists(live)), live
            name = os.path.basename(next(iter(stale.paths.values())))
            assert f"removed 1 stale worker cgroups: ['{name}']" in caplog.messages
        finally:
            alive.kill()
            live.remove()
