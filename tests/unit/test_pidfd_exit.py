"""pidfd_exit.exit_status: the exit status of a process that is not our child, from the kernel,
once its own parent has reaped it (what the pool does for a worker's program)."""

from __future__ import annotations

import os
import select
import time

from sandboxd_pool.pidfd_exit import exit_status


def test_a_grandchild_exit_status_once_its_parent_reaped_it() -> None:
    r, w = os.pipe()
    release_r, release_w = os.pipe()
    parent = os.fork()
    if parent == 0:  # the grandchild's parent (a worker's init)
        os.close(r)
        child = os.fork()
        if child == 0:
            os.read(release_r, 1)
            os._exit(7)
        os.write(w, str(child).encode())
        os.waitpid(child, 0)
        time.sleep(0.5)  # reaped: the grandchild's status is the kernel's to give now
        os._exit(0)
    os.close(w)
    child = int(os.read(r, 32))
    pidfd = os.pidfd_open(child)
    try:
        assert exit_status(pidfd) is None  # still running
        os.write(release_w, b"x")
        select.select([pidfd], [], [], 10)
        deadline = time.monotonic() + 10
        status = None
        while status is None and time.monotonic() < deadline:
            status = exit_status(pidfd)
            time.sleep(0.01)
        assert status is not None and os.waitstatus_to_exitcode(status) == 7
    finally:
        os.close(pidfd)
        os.waitpid(parent, 0)
