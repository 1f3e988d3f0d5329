"""Worker cgroups on v2 from creation to removal (run inside the VM): one per worker under the
pool's parent, none left after close(), and those of a zygote killed with SIGKILL swept by
the next one, which also kills (cgroup.kill) anything still inside them."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from helpers import run

from sandboxd_pool import Limits, Pool, PoolConfig, Runtime, Verdict

from .conftest import CGROUP2, CREATED_INSIDE, cgroup_of, cgroup_tree

HELLO = {Runtime.PYTHON: "print('hello')", Runtime.JAVASCRIPT: "console.log('hello')"}


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def hello_ok(pool: Pool) -> None:
    for runtime, code in HELLO.items():
        outcome = run(pool, runtime, code, limits=Limits(wall_time_ms=30_000))
        assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"hello\n"), outcome


def worker_cgroups(parent: str, zygote: int) -> set[str]:
    path = os.path.join(CGROUP2, parent)
    if not os.path.isdir(path):
        return set()
    return {name for name in os.listdir(path) if name.startswith(f"z{zygote}-")}


def test_each_worker_is_created_in_its_own_cgroup_and_close_leaves_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sandboxd_pool")
    before = cgroup_tree()
    parent = "v2-close"
    with Pool(PoolConfig(warm_workers_per_runtime=2, cgroup_parent=parent)) as pool:
        assert pool.cgroups.version == 2, pool.cgroup_warning
        assert pool.wait_until_ready(120), pool.health()
        assert CREATED_INSIDE in caplog.text  # clone3 CLONE_INTO_CGROUP, not cgroup.procs
        hello_ok(pool)
        assert pool.wait_until_ready(120), pool.health()
        workers = [pid for pids in pool.worker_pids().values() for pid in pids]
        assert len(workers) == 4, pool.worker_pids()
        places = {cgroup_of(pid) for pid in workers}
        # one cgroup each, named after the zygote, under the pool's parent
        assert len(places) == 4, places
        assert all(p.startswith(f"/{parent}/z{pool.zygote_pid}-") for p in places), places
        with open(os.path.join(CGROUP2, parent, "cgroup.subtree_control")) as f:
            assert {"memory", "pids", "cpu"} <= set(f.read().split())
    assert cgroup_tree() == before


def test_a_killed_zygotes_cgroups_are_swept_by_the_next(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sandboxd_pool")
    before = cgroup_tree()
    parent = "v2-sweep"
    with Pool(PoolConfig(warm_workers_per_runtime=2, cgroup_parent=parent)) as pool:
        assert pool.wait_until_ready(120), pool.health()
        old = pool.zygote_pid
        stale = worker_cgroups(parent, old)
        assert len(stale) == 4, stale  # the warm workers' (and the template is in none)
        os.kill(old, signal.SIGKILL)
        wait_for("a new zygote", lambda: pool.zygote_pid not in (None, old))
        wait_for("the dead zygote's cgroups swept", lambda: not worker_cgroups(parent, old))
        swept = [r.getMessage() for r in caplog.records if "stale worker cgroups" in r.getMessage()]
        assert swept, caplog.text
        assert all(name in swept[-1] for name in stale), (swept, stale)
        hello_ok(pool)
    assert cgroup_tree() == before


def test_the_sweep_kills_what_is_left_in_a_stale_cgroup(caplog: pytest.LogCaptureFixture) -> None:
    """A process still inside a dead zygote's worker cgroup (planted here: the kernel keeps
    a worker's tree in its PID namespace, so the engine itself leaves none) is killed with
    cgroup.kill and the cgroup removed when the next pool starts."""
    caplog.set_level(logging.WARNING, logger="sandboxd_pool")
    before = cgroup_tree()
    parent = "v2-straggler"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that is no longer a zygote
    stale = os.path.join(CGROUP2, parent, f"z{dead.pid}-1")
    with open(os.path.join(CGROUP2, "cgroup.subtree_control"), "w") as f:
        f.write("+memory +pids +cpu")
    os.makedirs(stale)
    straggler = subprocess.Popen(["sleep", "600"])
    try:
        with open(os.path.join(stale, "cgroup.procs"), "w") as f:
            f.write(str(straggler.pid))
        assert cgroup_of(straggler.pid) == f"/{parent}/z{dead.pid}-1"
        with Pool(
            PoolConfig(warm_workers_per_runtime=1, runtimes=(Runtime.PYTHON,), cgroup_parent=parent)
        ) as pool:
            assert pool.cgroups.version == 2, pool.cgroup_warning
            assert f"removed 1 stale worker cgroups: ['z{dead.pid}-1']" in caplog.text
            assert straggler.wait(timeout=10) == -signal.SIGKILL
            assert not os.path.exists(stale)
    finally:
        if straggler.poll() is None:
            straggler.kill()
            straggler.wait()
    assert cgroup_tree() == before
