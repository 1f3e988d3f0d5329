"""Drop every capability: bounding set, ambient set, then the uid switch clears the rest."""

from __future__ import annotations

import contextlib
import ctypes
import os

from ._libc import check, libc

SYS_capset = 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def drop_all_and_become(uid: int, gid: int) -> None:
    for cap in range(_last_cap() + 1):
        check(libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0), "prctl(CAPBSET_DROP)")
    with contextlib.suppress(OSError):
        check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # The kernel clears capabilities on a uid change only when the old uid was 0 in the
    # namespace; ours was the host's root, unmapped (65534) in the new user namespace, so the
    # namespace's full set survived the switch. An exec would recompute them (the bounding set
    # is empty); a worker forked from the template never execs. Clear them explicitly.
    _clear_capability_sets()
    # The uid change made the process non-dumpable, which leaves its /proc/self entries owned
    # by (unmapped) root: exec would reset that; a worker forked from the template has no exec.
    # (Dumpable or not, no core dump can start a helper: RLIMIT_CORE is 1 and locked, rlimits.py.)
    set_dumpable(True)


def set_dumpable(dumpable: bool) -> None:
    check(libc.prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0), "prctl(SET_DUMPABLE)")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _clear_capability_sets() -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # all zero: effective, permitted and inheritable emptied
    check(libc.syscall(SYS_capset, ctypes.byref(header), ctypes.byref(data)), "capset")


def set_no_new_privs() -> None:
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
