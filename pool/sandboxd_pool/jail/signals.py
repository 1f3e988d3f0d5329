"""The signal state a runtime starts with: every disposition SIG_DFL and nothing blocked.

A disposition of SIG_IGN and the signal mask survive execve, so without this a runtime in the
jail would start with whatever the daemon's own parent ignored or blocked: a daemon started
by GNU make, for one, has signals 32 and 33 ignored (glibc's internal ones), and so had every
sandboxed program, which could not kill its own child with signal 32. A program must start as
it would from a login shell; what the runtime sets for itself (Python and Node ignore SIGPIPE
and SIGXFSZ) it sets after the exec.

glibc refuses to touch 32 and 33 (sigaction gives EINVAL), so the dispositions are set with
the raw rt_sigaction call; pthread_sigmask can clear the whole mask.
"""

from __future__ import annotations

import ctypes
import signal

from ._libc import SYS_rt_sigaction, check, libc

KERNEL_NSIG = 64  # signals 1..64 (_NSIG on Linux)
_SIGSET_BYTES = KERNEL_NSIG // 8


class _KernelSigaction(ctypes.Structure):
    """struct sigaction as the rt_sigaction system call takes it on x86-64."""

    _fields_ = [
        ("handler", ctypes.c_void_p),  # NULL is SIG_DFL
        ("flags", ctypes.c_ulong),
        ("restorer", ctypes.c_void_p),
        ("mask", ctypes.c_uint64),
    ]


def reset_for_exec() -> None:
    """Every catchable signal to SIG_DFL and an empty mask; call just before execve (a
    handler this process set is reset by the exec anyway, so nothing it relies on is lost
    before the exec replaces it)."""
    default = _KernelSigaction()
    for sig in range(1, KERNEL_NSIG + 1):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        check(
            libc.syscall(
                ctypes.c_long(SYS_rt_sigaction),
                ctypes.c_int(sig),
                ctypes.byref(default),
                None,
                ctypes.c_size_t(_SIGSET_BYTES),
            ),
            f"rt_sigaction({sig})",
        )
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
