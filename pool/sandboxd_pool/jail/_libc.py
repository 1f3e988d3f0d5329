"""ctypes access to the libc calls Python does not expose (Python 3.11 has no os.unshare)."""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
# PyDLL keeps the GIL held during the call: needed for clone(), which must not run with the
# GIL released (the child would inherit a released GIL in an inconsistent state).
libc_gil = ctypes.PyDLL(None, use_errno=True)

SYS_rt_sigaction = 13
SYS_clone = 56
SYS_pivot_root = 155
SYS_fsconfig = 431
SYS_fspick = 433


def fork_with(name: str, number: int, *args: object) -> int:
    """A raw clone-family syscall (`number` with `args`) with Python's fork bookkeeping around
    it (import lock, after-fork hooks), as os.fork() does. Returns 0 in the child, the child's
    pid in the parent; raises OSError naming `name` if it fails. Only safe in a single-threaded
    process: the zygote."""
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = libc_gil.syscall(ctypes.c_long(number), *args)
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return int(pid)


def check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result
