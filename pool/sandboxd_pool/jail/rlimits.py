"""rlimits: set at boot in the child, and per request on the running worker with prlimit."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
from collections.abc import Iterator

from ._libc import check, libc
from .capabilities import PR_SET_DUMPABLE
from .policy import RlimitPlan

SYS_setresuid = 117
SYS_setresgid = 119
_UNCHANGED = ctypes.c_long(-1)


def _within_hard(value: int, hard: int) -> int:
    """Raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace, which a
    non-root daemon (subuid mode) or a container without it lacks: never ask for more than the
    hard limit the worker inherited. Lower is only stricter."""
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def apply_boot_rlimits(plan: RlimitPlan) -> None:
    def both(kind: int, value: int) -> None:
        value = _within_hard(value, resource.getrlimit(kind)[1])
        resource.setrlimit(kind, (value, value))

    # 1, not 0: where core_pattern pipes to a helper, the kernel starts that helper (as host
    # root) for a crash whatever the limit, except when it is exactly 1; and 1 byte is below
    # the smallest core file, so no file is written either. The seccomp filter refuses every
    # change of RLIMIT_CORE (_in_zygote/seccomp_policy.py), so the program cannot lower it to 0.
    both(resource.RLIMIT_CORE, 1)
    both(resource.RLIMIT_NOFILE, plan.nofile)
    # Per-user kernel budgets, bounded per worker (they are charged to its host uid).
    both(resource.RLIMIT_SIGPENDING, plan.sigpending)
    both(resource.RLIMIT_MSGQUEUE, plan.msgqueue_bytes)
    both(resource.RLIMIT_STACK, plan.stack_bytes)
    both(resource.RLIMIT_FSIZE, plan.fsize_bytes)
    both(resource.RLIMIT_NPROC, plan.nproc)
    if plan.data_bytes:
        both(resource.RLIMIT_DATA, plan.data_bytes)


def limit_running_worker(
    pid: int,
    cpu_seconds: int,
    max_processes: int,
    data_bytes: int = 0,
    acting_as: tuple[int, int] | None = None,
) -> None:
    """Tighten the limits of a warm worker's program for its request (children inherit them).

    cpu_seconds counts from the program's start: the caller adds the time already used booting.
    SIGXCPU at the soft limit, SIGKILL one second later.
    acting_as: the worker's host (uid, gid), when its user namespace is not the caller's to
    command (root mode: the slot's uid made it, so only that uid, or CAP_SYS_RESOURCE, may use
    prlimit on it); this thread alone takes those ids for the calls (_thread_acting_as).
    """

    def both(kind: int, soft: int, hard: int) -> None:
        current = resource.prlimit(pid, kind)[1]
        resource.prlimit(pid, kind, (_within_hard(soft, current), _within_hard(hard, current)))

    with _thread_acting_as(acting_as) if acting_as else contextlib.nullcontext():
        both(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
        both(resource.RLIMIT_NPROC, max_processes, max_processes)
        if data_bytes:
            both(resource.RLIMIT_DATA, data_bytes, data_bytes)


def _setres(nr: int, real: int, effective: int) -> None:
    check(libc.syscall(nr, ctypes.c_long(real), ctypes.c_long(effective), _UNCHANGED), "setres*id")


@contextlib.contextmanager
def _thread_acting_as(ids: tuple[int, int]) -> Iterator[None]:
    """Run the body with this thread's real and effective ids set to `ids`, then restore root.

    Raw syscalls: credentials belong to each kernel thread, and glibc's setresuid would change
    every thread of the process. The saved ids stay 0, so the way back needs no capability, and
    the capabilities come back with the effective uid 0. A thread that could not come back is
    not left running with a worker's ids: the process aborts.
    """
    uid, gid = ids
    _setres(SYS_setresgid, gid, gid)
    try:
        _setres(SYS_setresuid, uid, uid)
        try:
            yield
        finally:
            try:
                _setres(SYS_setresuid, 0, 0)
            except OSError:
                os.abort()
    finally:
        try:
            _setres(SYS_setresgid, 0, 0)
        except OSError:
            os.abort()
        # Any change of the effective ids made the whole process non-dumpable; put it back.
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
