"""The host's task budget for workers used up: pids.max of the daemon's cgroup parent (its own,
--cgroup-parent, so that no other sandboxd on this machine is starved) set below what its warm
workers already hold, so that no task can be created under it. (Set to exactly what they hold,
nothing fails: each used worker's tasks are freed before its replacement needs them.)

Measured outcome: a Python program's fork fails with EAGAIN (RUNTIME_ERROR, BlockingIOError on
stderr), as under its own max_processes. No new worker of either runtime can boot: each worker's
init must fork its program inside the worker's cgroup (Python: EAGAIN; Node: V8 cannot start its
threads either), so once the warm ones are used each runtime turns NOT_SERVING with a reason
naming the refused tasks, and Execute is UNAVAILABLE with it. The daemon lives through it, and
with the budget back both runtimes are SERVING again."""

from __future__ import annotations

import os

from e2e.daemon import start
from soak import footprint

from sandboxd_client import NO_RETRY, Client, Limits, Unavailable, Verdict

from .support import NOT_SERVING, SERVING, eventually, health, hello, warm

WARM = 2
FORK = "import subprocess\nsubprocess.run(['/bin/true'])\nprint('forked')\n"
REFUSED = "the pids controller refused"


def test_exhausted_pid_budget() -> None:
    mounts_before = footprint.mount_points()
    parent = f"sandboxd-faults-{os.getpid()}-pids"
    d = start(["--warm-workers", str(WARM), "--cgroup-parent", parent], warm=WARM)
    zygotes: set[int] = set()
    pids_max = ""
    try:
        zygote = footprint.zygote_of(d.proc.pid)
        assert zygote is not None
        zygotes.add(zygote)
        warm(d, WARM)
        (pids_parent,) = [
            os.path.join(root, parent)
            for root in footprint.cgroup_roots()
            if os.path.exists(os.path.join(root, parent, "pids.max"))
        ]
        pids_max = os.path.join(pids_parent, "pids.max")
        with open(os.path.join(pids_parent, "pids.current")) as f:
            current = int(f.read())
        assert current > 0
        with open(pids_max, "w") as f:
            f.write("1")
        with Client(d.address, retry=NO_RETRY) as client:
            r = client.execute("python", FORK, limits=Limits(wall_time_ms=20_000))
            assert (r.verdict, r.exit_code) == (Verdict.RUNTIME_ERROR, 1), r
            assert b"BlockingIOError: [Errno 11] Resource temporarily unavailable" in r.stderr
            r = hello(client, "python")  # the other warm Python worker still serves
            assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r

            def refused(runtime: str) -> str | None:
                try:
                    hello(client, runtime)
                except Unavailable as e:
                    return str(e)
                return None

            for runtime in ("python", "javascript"):
                reason = eventually(f"{runtime} UNAVAILABLE", lambda rt=runtime: refused(rt))
                assert REFUSED in reason, reason
                eventually(  # the health service follows the pool every 0.25 s
                    f"{runtime} NOT_SERVING",
                    lambda rt=runtime: health(d, f"sandboxd.v1.Sandbox/{rt}") == NOT_SERVING,
                )
                assert any(
                    m.startswith(f"runtime {runtime} marked unhealthy") and REFUSED in m
                    for m in d.log_messages()
                ), d.log_messages()
            assert health(d) == NOT_SERVING

            with open(pids_max, "w") as f:
                f.write("max")
            eventually("JavaScript SERVING again", lambda: health(d) == SERVING)
            warm(d, WARM)
            for runtime in ("python", "javascript"):
                r = hello(client, runtime)
                assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r
            r = client.execute("python", FORK, limits=Limits(wall_time_ms=20_000))
            assert (r.verdict, r.stdout) == (Verdict.OK, b"forked\n"), r
        assert footprint.zygote_of(d.proc.pid) == zygote
        assert d.stop() == 0, "".join(d.raw_stderr[-20:])
    finally:
        if pids_max and os.path.exists(pids_max):
            with open(pids_max, "w") as f:
                f.write("max")
        if d.proc.poll() is None:  # failed: the pool never closed, its parent is ours to remove
            d.proc.kill()
            d.proc.wait()
            footprint.wait_nothing_left(d.proc.pid, zygotes, mounts_before)
            for root in footprint.cgroup_roots():
                if os.path.isdir(os.path.join(root, parent)):
                    os.rmdir(os.path.join(root, parent))
    footprint.wait_nothing_left(d.proc.pid, zygotes, mounts_before)
    for root in footprint.cgroup_roots():
        assert not os.path.isdir(os.path.join(root, parent)), "the cgroup parent was left"
