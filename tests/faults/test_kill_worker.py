"""kill -9 of a worker from outside the sandbox (an operator, the OOM killer of the host).

Mid-execution the verdict is KILLED (a signal the parent did not send, docs/architecture.md: kernel facts,
not the worker's word), the call answers at once, and the pool refills. An idle warm worker
killed the same way is noticed and replaced: no execution is ever given to it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2e.daemon import Daemon, start
from soak import footprint

from sandboxd_client import NO_RETRY, Client, Limits, Verdict

from .support import eventually, hello, new_marker, pids_named, sleeper, warm

WARM = 2


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    mounts_before = footprint.mount_points()
    d = start(["--warm-workers", str(WARM)], warm=WARM)
    zygote = eventually("a zygote", lambda: footprint.zygote_of(d.proc.pid))
    yield d
    assert footprint.zygote_of(d.proc.pid) == zygote, "the zygote was restarted"
    assert d.stop() == 0, "".join(d.raw_stderr[-20:])
    footprint.wait_nothing_left(d.proc.pid, {zygote}, mounts_before)


@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_a_worker_killed_mid_execution_is_killed_and_replaced(daemon: Daemon, runtime: str) -> None:
    warm(daemon, WARM)
    marker = new_marker()
    with Client(daemon.address, retry=NO_RETRY) as client, ThreadPoolExecutor(1) as pool:
        call = pool.submit(
            client.execute,
            runtime,
            sleeper(marker, runtime),
            limits=Limits(wall_time_ms=120_000),
            timeout_s=120,
        )
        (pid,) = eventually("the program runs", lambda: pids_named(marker))
        os.kill(pid, signal.SIGKILL)
        result = call.result(timeout=60)
        assert result.verdict is Verdict.KILLED, result
        assert (result.exit_code, result.signal) == (None, signal.SIGKILL)
        assert result.stdout == b"started\n"
        assert pids_named(marker) == []
        warm(daemon, WARM)
        for _ in range(WARM + 1):
            assert (r := hello(client, runtime)).verdict is Verdict.OK, r


@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_an_idle_warm_worker_killed_is_replaced_before_anyone_gets_it(
    daemon: Daemon, runtime: str
) -> None:
    warm(daemon, WARM)
    victim = idle_worker(footprint.tree(daemon.proc.pid, ()), runtime)
    os.kill(victim, signal.SIGKILL)
    eventually(
        "the killed worker reaped and replaced",
        lambda: (
            warm(daemon, WARM)
            and victim not in footprint.tree(daemon.proc.pid, ()).worker_pids
            and len(footprint.tree(daemon.proc.pid, ()).worker_pids) == 2 * WARM
        ),
    )
    with Client(daemon.address, retry=NO_RETRY) as client:
        for _ in range(WARM + 1):  # every warm worker of the runtime, and a fresh one
            r = hello(client, runtime)
            assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r


def idle_worker(report: footprint.TreeReport, runtime: str) -> int:
    """The init of a warm `runtime` worker: its program is alive and holds its descriptors.
    The worker of an execution that just ended is in the tree for a moment longer, its init
    still there with at most the program's exit helper under it (which shares the program's
    command line but holds no descriptor): it is gone by the time it would be killed."""
    for pid in sorted(report.worker_pids):
        live = [c for c in footprint.children_of(pid) if footprint.open_fds(c)]
        if len(live) == 1 and ("node_boot.js" in footprint.cmdline(live[0])) == (
            runtime == "javascript"
        ):
            return pid
    raise AssertionError(f"no warm {runtime} worker in {report.describe(report.worker_pids)}")
