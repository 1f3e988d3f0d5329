"""kill -9 of the zygote (every worker's parent): its workers die with it (parent-death
signal), the execution in flight ends INTERNAL_ERROR with the reason on stderr (docs/api.md: not a
hang, not a gRPC error), the pool starts a new zygote, which sweeps the dead one's worker
cgroups, and later work succeeds in both runtimes."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

from e2e.daemon import start
from soak import footprint

from sandboxd_client import NO_RETRY, Client, Limits, Verdict

from .support import SERVING, eventually, health, hello, new_marker, pids_named, sleeper, warm

WARM = 2


def test_zygote_killed_mid_execution() -> None:
    mounts_before = footprint.mount_points()
    d = start(["--warm-workers", str(WARM)], warm=WARM)
    zygotes: set[int] = set()
    try:
        old = eventually("a zygote", lambda: footprint.zygote_of(d.proc.pid))
        zygotes.add(old)
        warm(d, WARM)
        marker = new_marker()
        with Client(d.address, retry=NO_RETRY) as client, ThreadPoolExecutor(1) as pool:
            call = pool.submit(
                client.execute,
                "python",
                sleeper(marker),
                limits=Limits(wall_time_ms=120_000),
                timeout_s=120,
            )
            eventually("the program runs", lambda: pids_named(marker))
            os.kill(old, signal.SIGKILL)
            result = call.result(timeout=60)
            assert result.verdict is Verdict.INTERNAL_ERROR, result
            assert result.stdout == b"started\n"
            assert b"the zygote (the workers' parent process) died" in result.stderr
            # the worker died with its parent (and, reparented, is reaped by init)
            eventually("the worker gone", lambda: pids_named(marker) == [] or None, 30)

            new = eventually("a new zygote", lambda: footprint.zygote_of(d.proc.pid))
            zygotes.add(new)
            assert new != old
            d.wait_for_log_entry("zygote is gone; starting a new one", timeout_s=30)
            eventually(
                "the dead zygote's cgroups swept", lambda: not footprint.worker_cgroups({old})
            )
            assert not footprint.processes_in_worker_cgroups({old})
            warm(d, WARM)
            assert health(d) == SERVING
            for runtime in ("python", "javascript"):
                for _ in range(WARM + 1):
                    r = hello(client, runtime)
                    assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r
        assert d.proc.poll() is None
        assert d.stop() == 0, "".join(d.raw_stderr[-20:])
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    footprint.wait_nothing_left(d.proc.pid, zygotes, mounts_before)
