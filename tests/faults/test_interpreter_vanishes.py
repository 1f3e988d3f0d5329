"""The interpreter binary vanishes under a running daemon (a package upgrade gone wrong, a
volume unmounted): the daemon is configured with a copy of `node` in a temp dir, the copy is
deleted, and the ready workers are killed so that new ones must start. They cannot: JavaScript
turns NOT_SERVING (and the overall health with it) with a reason naming the binary, Execute is
UNAVAILABLE with that reason, Python is unaffected, and the daemon lives. With the binary back,
JavaScript is SERVING again."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

from e2e.daemon import start
from soak import footprint

from sandboxd_client import NO_RETRY, Client, Unavailable, Verdict

from .support import NOT_SERVING, SERVING, eventually, health, hello, warm

WARM = 2


def test_node_binary_vanishes() -> None:
    mounts_before = footprint.mount_points()
    # Not under /tmp: the jail's own scratch /tmp would hide a binary bound there.
    with tempfile.TemporaryDirectory(prefix="sandboxd-faults-node-", dir="/var/tmp") as tmpdir:
        node = os.path.join(tmpdir, "node")
        shutil.copy2(os.path.realpath(shutil.which("node") or "/usr/bin/node"), node)
        d = start(["--warm-workers", str(WARM), "--node", node], warm=WARM)
        zygotes: set[int] = set()
        try:
            zygote = footprint.zygote_of(d.proc.pid)
            assert zygote is not None
            zygotes.add(zygote)
            warm(d, WARM)
            assert health(d) == SERVING
            os.unlink(node)
            for pid in footprint.tree(d.proc.pid, ()).worker_pids:
                if "node_boot.js" in footprint.worker_cmdline(pid):
                    os.kill(pid, signal.SIGKILL)
            eventually(
                "JavaScript NOT_SERVING",
                lambda: health(d, "sandboxd.v1.Sandbox/javascript") == NOT_SERVING,
            )
            assert health(d) == NOT_SERVING
            assert health(d, "sandboxd.v1.Sandbox/python") == SERVING
            unhealthy = [
                m for m in d.log_messages() if m.startswith("runtime javascript marked unhealthy")
            ]
            assert unhealthy and node in unhealthy[0], d.log_messages()
            with Client(d.address, retry=NO_RETRY) as client:
                try:
                    hello(client, "javascript")
                    raise AssertionError("JavaScript ran without its interpreter")
                except Unavailable as e:
                    assert node in str(e), e
                r = hello(client, "python")
                assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r

                shutil.copy2(os.path.realpath(shutil.which("node") or "/usr/bin/node"), node)
                eventually("JavaScript SERVING again", lambda: health(d) == SERVING)
                r = hello(client, "javascript")
                assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r
            assert footprint.zygote_of(d.proc.pid) == zygote
            assert d.stop() == 0, "".join(d.raw_stderr[-20:])
        finally:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
        footprint.wait_nothing_left(d.proc.pid, zygotes, mounts_before)
