"""ctypes access to the libc calls Python does not expose (Python 3.11 has no os.unshare)."""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
# PyDLL keeps the GIL held during the call: needed for clone(), which must not run with the
# GIL released (the child would inherit a released GIL in an inconsistent state).
libc_gil = ctypes.PyDLL(None, use_errno=True)

SYS_clone = 56
SYS_pivot_root = 155
SYS_fsconfig = 431
SYS_fspick = 433


def check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result
