"""The one ordered entry into the jail, run in the cloned child. Seccomp last.

Before this runs, clone(2) has made the PID namespace and the zygote has created the child's
cgroup. Order here: cgroup (the child moves itself in), mount/net/IPC/UTS/cgroup namespaces, filesystem (as real root),
hostname, user namespace (mapped by the zygote), rlimits, capabilities, no_new_privs, seccomp.
"""

from __future__ import annotations

import os
import socket

from . import capabilities, mounts, namespaces, rlimits, seccomp
from .cgroups import WorkerCgroup
from .policy import SANDBOX_HOSTNAME, SANDBOX_UID, JailPlan, RuntimePlan

WORKER_FDS = 4  # 0 stdin, 1 stdout, 2 stderr, 3 control socket


def enter_and_exec(
    plan: JailPlan,
    runtime: RuntimePlan,
    bpf: bytes,
    outside_uid: int,
    cgroup: WorkerCgroup | None,
    fds: tuple[int, int, int, int],
    setup: int,
) -> None:
    """Never returns: execs the runtime, or reports the error on `setup` and exits 127."""
    report_fd = setup
    try:
        namespaces.set_parent_death_signal()
        _wait_for(setup, b"go")
        if cgroup is not None:
            cgroup.enter_self()
        namespaces.unshare(namespaces.CHILD_UNSHARE_FLAGS)
        mounts.build_root(
            binds=plan.common_binds + runtime.binds,
            boot_dir=plan.boot_dir,
            masked_dirs=runtime.masked_dirs,
            symlinks=plan.symlinks,
            etc_files=plan.etc_files,
            scratch_bytes=plan.scratch_bytes,
            owner_uid=outside_uid,
        )
        namespaces.set_hostname(SANDBOX_HOSTNAME)
        # The user namespace comes last of all namespaces, still as real root (so it works where
        # unprivileged user namespaces are disabled); the zygote writes its uid/gid map.
        namespaces.unshare(namespaces.CLONE_NEWUSER)
        os.write(setup, b"map")
        _wait_for(setup, b"mapped")
        _install_fds(fds, setup)
        report_fd = WORKER_FDS
        rlimits.apply_boot_rlimits(plan.rlimits)
        capabilities.drop_all_and_become(SANDBOX_UID, SANDBOX_UID)
        capabilities.set_no_new_privs()
        listener = seccomp.load_filter(bpf)
        setup_sock = socket.socket(fileno=WORKER_FDS)
        socket.send_fds(setup_sock, [b"ok"], [listener])
        setup_sock.detach()
        os.close(listener)
        os.execve(runtime.argv[0], list(runtime.argv), dict(runtime.env))
    except BaseException as e:
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
