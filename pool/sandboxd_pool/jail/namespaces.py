"""User, PID, mount, net, IPC, UTS and cgroup namespaces.

The zygote creates the worker with clone(CLONE_NEWPID), so the worker is PID 1 of its own PID
namespace and the zygote is its parent (it reaps it and reads the kernel's facts). The child
then moves itself into its cgroup and unshares the mount, net, IPC, UTS and cgroup namespaces
(so it sees its cgroup as its root) and, once its filesystem is built, the user namespace,
whose one-uid map the zygote writes.

Subuid mode (jail/mode.py): the zygote clones with CLONE_NEWUSER | CLONE_NEWPID (the kernel
makes the user namespace first, so it owns the PID namespace), maps it with the setuid helpers
newuidmap/newgidmap, and the child unshares the rest from inside its user namespace.
"""

from __future__ import annotations

import ctypes
import os
import signal

from ._libc import SYS_clone, check, fork_with, libc

CLONE_PARENT = 0x00008000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Only the PID namespace must be made by clone(2) (so the worker is PID 1). The others are
# unshared by the child itself: creating a network namespace and copying the mount table
# cost milliseconds, which would otherwise stall the single-threaded zygote (see enter.py).
WORKER_CLONE_FLAGS = CLONE_NEWPID
SUBUID_WORKER_CLONE_FLAGS = CLONE_NEWUSER | CLONE_NEWPID
CHILD_UNSHARE_FLAGS = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP

PR_SET_PDEATHSIG = 1


def clone_into_namespaces(flags: int = WORKER_CLONE_FLAGS) -> int:
    """fork(2) that also creates namespaces. Returns 0 in the child, the child's pid in the parent.

    Only safe in a single-threaded process: the zygote (_libc.fork_with).
    """
    return fork_with(
        "clone", SYS_clone, ctypes.c_ulong(flags | signal.SIGCHLD), None, None, None, None
    )


def unshare(flags: int) -> None:
    check(libc.unshare(ctypes.c_int(flags)), "unshare")


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    check(libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0), "prctl(PDEATHSIG)")


def write_id_maps(pid: int, inside_id: int, outside_id: int) -> None:
    """Map one id inside the child's user namespace to one unprivileged id outside.

    Written by the zygote (root in the parent namespace, so it may map any id)."""
    line = f"{inside_id} {outside_id} 1\n"
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(line)


def set_hostname(name: str) -> None:
    raw = name.encode()
    check(libc.sethostname(raw, len(raw)), "sethostname")


def start_id_map_helpers(
    pid: int, inside_id: int, outside_uid: int, outside_gid: int, helpers: tuple[str, str]
) -> list[tuple[int, int]]:
    """Subuid mode: start `newuidmap PID INSIDE OUTSIDE 1` and `newgidmap PID INSIDE OUTSIDE 1`
    (absolute paths, empty environment), without waiting: the caller reaps them. Returns
    (helper pid, read end of a pipe holding its stderr) per helper."""
    started: list[tuple[int, int]] = []
    try:
        for tool, outside in zip(helpers, (outside_uid, outside_gid), strict=True):
            r, w = os.pipe2(os.O_CLOEXEC)
            try:
                helper = os.posix_spawn(
                    tool,
                    [tool, str(pid), str(inside_id), str(outside), "1"],
                    {},
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                        (os.POSIX_SPAWN_DUP2, w, 2),
                    ],
                )
            except BaseException:
                os.close(r)
                raise
            finally:
                os.close(w)
            started.append((helper, r))
    except BaseException:
        for _, r in started:
            os.close(r)
        raise
    return started
