"""The one ordered entry into the jail, run in the cloned child. Seccomp last.

Two ways in, one order:
  exec path (Node; Python when the template is off): the zygote clones the child with
    CLONE_NEWPID; the child builds the read-only root itself, confines itself, execs the runtime.
  Python template: a warm `python -I -S` that already lives in the read-only root clones the
    child (CLONE_NEWPID | CLONE_PARENT, so the zygote is still its parent and reaper); the
    child confines itself and runs the bootstrap in the already-warm interpreter, no exec.

confine(), in order: wait for the zygote's "go"; cgroup (the child moves itself in); mount, net,
IPC, UTS and cgroup namespaces; its private mounts (scratch tmpfs, a fresh /proc) as real root;
hostname; user namespace (mapped by the zygote); fds; rlimits; capabilities; no_new_privs;
seccomp (whose listener goes to the zygote).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from . import capabilities, cgroups, mounts, namespaces, rlimits, seccomp
from .policy import SANDBOX_HOSTNAME, SANDBOX_UID, JailPlan, RlimitPlan, RuntimePlan

WORKER_FDS = 4  # 0 stdin, 1 stdout, 2 stderr, 3 control socket; 4 setup socket until confined


def jail_extra_binds(plan: JailPlan) -> Mapping[str, str]:
    return {mounts.BOOT_MOUNT: plan.boot_dir, f"{mounts.JAIL_LIB_MOUNT}/jail": plan.jail_dir}


def enter_and_exec(
    plan: JailPlan,
    runtime: RuntimePlan,
    bpf: bytes,
    outside_uid: int,
    cgroup_fds: tuple[int, ...],
    fds: tuple[int, int, int, int],
    setup: int,
) -> None:
    """Never returns: execs the runtime, or reports the error on `setup` and exits 127."""
    report = [setup]
    try:
        _leave_the_zygotes_world(setup, cgroup_fds)
        mounts.build_root(
            binds=plan.common_binds + runtime.binds,
            extra_binds=jail_extra_binds(plan),
            masked_dirs=runtime.masked_dirs,
            symlinks=plan.symlinks,
            etc_files=plan.etc_files,
        )
        _confine(plan.scratch_bytes, plan.rlimits, bpf, outside_uid, fds, setup, report)
        os.execve(runtime.argv[0], list(runtime.argv), dict(runtime.env))
    except BaseException as e:
        _die(report[0], e)


def enter_forked(
    scratch_bytes: int,
    rlimits_plan: RlimitPlan,
    bpf: bytes,
    outside_uid: int,
    cgroup_fds: tuple[int, ...],
    fds: tuple[int, int, int, int],
    setup: int,
) -> None:
    """In a child of the Python template: confine, then return to run the bootstrap in place.
    On error, reports on `setup` and exits 127."""
    report = [setup]
    try:
        _leave_the_zygotes_world(setup, cgroup_fds)
        _confine(scratch_bytes, rlimits_plan, bpf, outside_uid, fds, setup, report)
        os.close(WORKER_FDS)  # no exec will close it: EOF tells the zygote we are confined
    except BaseException as e:
        _die(report[0], e)


def _leave_the_zygotes_world(setup: int, cgroup_fds: tuple[int, ...]) -> None:
    """Die with the zygote; once released, move into the worker's cgroup, then into new mount,
    net, IPC, UTS and cgroup namespaces (the cgroup namespace rooted at that cgroup)."""
    namespaces.set_parent_death_signal()
    _wait_for(setup, b"go")
    cgroups.enter_self(cgroup_fds)
    namespaces.unshare(namespaces.CHILD_UNSHARE_FLAGS)


def _confine(
    scratch_bytes: int,
    rlimits_plan: RlimitPlan,
    bpf: bytes,
    outside_uid: int,
    fds: tuple[int, int, int, int],
    setup: int,
    report: list[int],
) -> None:
    mounts.mount_private(scratch_bytes, outside_uid)
    namespaces.set_hostname(SANDBOX_HOSTNAME)
    # The user namespace comes last of all namespaces, still as real root (so it works where
    # unprivileged user namespaces are disabled); the zygote writes its uid/gid map.
    namespaces.unshare(namespaces.CLONE_NEWUSER)
    os.write(setup, b"map")
    _wait_for(setup, b"mapped")
    _install_fds(fds, setup)
    report[0] = WORKER_FDS
    rlimits.apply_boot_rlimits(rlimits_plan)
    capabilities.drop_all_and_become(SANDBOX_UID, SANDBOX_UID)
    capabilities.set_no_new_privs()
    listener = seccomp.load_filter(bpf)
    setup_sock = socket.socket(fileno=WORKER_FDS)
    socket.send_fds(setup_sock, [b"ok"], [listener])
    setup_sock.detach()
    os.close(listener)


def _die(report_fd: int, e: BaseException) -> None:
    try:
        os.write(report_fd, f"err {type(e).__name__}: {e}".encode())
    finally:
        os._exit(127)


def _wait_for(setup: int, word: bytes) -> None:
    if os.read(setup, 16) != word:
        raise RuntimeError(f"zygote did not send {word.decode()!r}")


def _install_fds(fds: tuple[int, int, int, int], setup: int) -> None:
    """Worker fds to 0..3, the setup socket to 4 (close-on-exec); close everything else."""
    staged = [os.dup(fd) for fd in (*fds, setup)]
    for target, fd in enumerate(staged):
        os.dup2(fd, target, inheritable=target < WORKER_FDS)
    os.closerange(WORKER_FDS + 1, 1 << 20)
