"""kill -9 of the daemon.

Alone: its zygote sees the pool's socket close, kills and reaps every worker, removes their
cgroups and exits; nothing remains. Together with its zygote (a SIGKILL to both, as the host's
OOM killer or `kill -9 -PGID` does; the zygote is stopped first so it cannot tidy up): the
workers die with the zygote (parent-death signal) but their cgroups stay; the next daemon's
zygote sweeps them at start and logs what it removed, and never touches the cgroups of a live
daemon sharing the parent. The engine makes no host mount and no temp file, so there is none
to sweep: checked too.

These daemons use a cgroup parent of their own (--cgroup-parent), so that the other sandboxd
instances on this machine, which sweep the shared `sandboxd` parent, cannot take the stale
cgroups first."""

from __future__ import annotations

import os
import signal
import tempfile

from e2e.daemon import Daemon, start
from soak import footprint

from sandboxd_client import NO_RETRY, Client, Verdict

from .support import eventually, hello, warm

WARM = 2


def _start(parent: str, tmpdir: str) -> Daemon:
    d = start(
        ["--warm-workers", str(WARM), "--cgroup-parent", parent], env={"TMPDIR": tmpdir}, warm=WARM
    )
    warm(d, WARM)
    return d


def _kill(d: Daemon) -> None:
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def _stale(parent: str, zygote: int) -> set[str]:
    return {
        p
        for p in footprint.worker_cgroups({zygote})
        if os.path.basename(os.path.dirname(p)) == parent
    }


def test_daemon_killed_alone_leaves_nothing() -> None:
    mounts_before = footprint.mount_points()
    parent = f"sandboxd-faults-{os.getpid()}-a"
    with tempfile.TemporaryDirectory(prefix="sandboxd-faults-") as tmpdir:
        d = _start(parent, tmpdir)
        try:
            zygote = footprint.zygote_of(d.proc.pid)
            assert zygote is not None
            assert footprint.worker_cgroups({zygote})
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            footprint.wait_nothing_left(d.proc.pid, {zygote}, mounts_before, tmpdir)
        finally:
            _kill(d)
    # the parent is left (nobody closed the pool); empty, it is removed here
    for base in footprint.cgroup_roots():
        path = os.path.join(base, parent)
        if os.path.isdir(path):
            os.rmdir(path)


def test_daemon_and_zygote_killed_the_next_daemon_sweeps_only_the_dead_ones() -> None:
    mounts_before = footprint.mount_points()
    parent = f"sandboxd-faults-{os.getpid()}-b"
    with tempfile.TemporaryDirectory(prefix="sandboxd-faults-") as tmpdir:
        bystander = _start(parent, tmpdir)
        victim = _start(parent, tmpdir)
        restarted: Daemon | None = None
        try:
            live_zygote = footprint.zygote_of(bystander.proc.pid)
            dead_zygote = footprint.zygote_of(victim.proc.pid)
            assert live_zygote and dead_zygote
            live_cgroups = footprint.worker_cgroups({live_zygote})
            assert live_cgroups
            os.kill(dead_zygote, signal.SIGSTOP)  # it must not tidy up when the daemon dies
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            os.kill(dead_zygote, signal.SIGKILL)
            eventually("the killed zygote gone", lambda: not footprint.cmdline(dead_zygote))
            eventually(
                "its workers dead (parent-death signal)",
                lambda: not footprint.processes_in_worker_cgroups({dead_zygote}),
            )
            stale = _stale(parent, dead_zygote)
            assert stale, "nothing was left to sweep: the test proves nothing"
            assert footprint.mount_points() - mounts_before == set()
            assert os.listdir(tmpdir) == []

            restarted = _start(parent, tmpdir)
            swept = [m for m in restarted.log_messages() if m.startswith("removed ")]
            names = {os.path.basename(p) for p in stale}
            assert swept and all(n in swept[0] for n in names), (swept, names)
            assert f"z{live_zygote}-" not in swept[0]
            assert _stale(parent, dead_zygote) == set()
            # the live daemon lost nothing and still serves
            assert live_cgroups <= footprint.worker_cgroups({live_zygote})
            with Client(bystander.address, retry=NO_RETRY) as client:
                for runtime in ("python", "javascript"):
                    r = hello(client, runtime)
                    assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r
            for d in (bystander, restarted):
                assert d.stop() == 0, "".join(d.raw_stderr[-20:])
            zygotes = {live_zygote, dead_zygote}
            zygotes.update(z for z in (footprint.zygote_of(restarted.proc.pid),) if z)
            footprint.wait_nothing_left(bystander.proc.pid, zygotes, mounts_before, tmpdir)
        finally:
            for d in (bystander, victim, restarted):
                if d is not None:
                    _kill(d)
    for base in footprint.cgroup_roots():
        assert not os.path.isdir(os.path.join(base, parent)), "the cgroup parent was left"
