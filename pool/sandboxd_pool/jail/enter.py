"""The one ordered entry into the jail, run in the cloned child. Seccomp last.

Two ways in, one order:
  exec path (Node; Python when the template is off): the zygote clones the child with
    CLONE_NEWPID; the child builds the read-only root itself, confines itself, execs the runtime.
  Python template: a warm `python -I -S` that already lives in the read-only root clones the
    child (CLONE_NEWPID | CLONE_PARENT, so the zygote is still its parent and reaper); the
    child confines itself and runs the bootstrap in the already-warm interpreter, no exec.

confine(), in order: wait for the zygote's "go"; cgroup (the child moves itself in); mount, net,
IPC, UTS and cgroup namespaces; with egress on, `lo` up and the proxy's listening socket in the
new network namespace (jail/network.py); its private mounts (scratch tmpfs, a fresh /proc) as real root;
hostname; the slot's host uid, then the user namespace (mapped by the zygote); fds; rlimits;
capabilities; no_new_privs; seccomp (whose listener goes to the zygote); then the fork of the
program, the confined process staying behind as the namespace's init (jail/init.py).

Subuid mode (jail/mode.py; exec path only): the zygote clones the child with CLONE_NEWUSER |
CLONE_NEWPID, so the user namespace comes first and owns the PID namespace. The child waits for
"go", moves into its cgroup (if any), asks for its map ("map": the zygote runs newuidmap and
newgidmap, SANDBOX_UID -> a subordinate id of the slot) and waits for "mapped"; then, holding
every capability inside its own user namespace, it unshares mount, net, IPC, UTS and cgroup,
opens the proxy's socket (egress on), builds its root (sources opened as the daemon user, then it becomes the sandbox user, keeping
the namespace's capabilities; /proc mounted before the old root is detached), its scratch
tmpfs, hostname; then fds, rlimits, capabilities, no_new_privs, seccomp exactly as above.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import capabilities, cgroups, init, mounts, namespaces, network, open_out, rlimits, seccomp
from .elf_runpath import relocate_runpath
from .fds import close_all_but
from .policy import (
    ENVIRONMENT_MOUNT,
    NODE_MODULES_MOUNT,
    OUT_DIR,
    SANDBOX_HOSTNAME,
    SANDBOX_UID,
    WORK_DIR,
    Bind,
    JailPlan,
    RlimitPlan,
    RuntimePlan,
)

WORKER_FDS = 4  # 0 stdin, 1 stdout, 2 stderr, 3 control socket: the program's
SETUP_FD = 4  # the setup socket to the zygote: the init's once confined
EXIT_PIPE_FD = 5  # the init's report of the program's exit, to the pool (jail/init.py)


def layer_patches(layers: tuple[Bind, ...]) -> dict[int, dict[str, bytes]]:
    """The replacement files of each layer (read once, by the zygote): the ELF files whose
    RUNPATH is relocated for the jail (jail/elf_runpath.py), and the layer's own `files`."""
    patches: dict[int, dict[str, bytes]] = {}
    for index, layer in enumerate(layers):
        for rel, text in layer.files:
            patches.setdefault(index, {})[rel] = text.encode()
        for rel in layer.relocate_runpath:
            source = os.path.join(layer.path, rel)
            with open(source, "rb") as f:
                data = f.read()
            patches.setdefault(index, {})[rel] = relocate_runpath(data, os.path.dirname(source))
    return patches


def enter_and_exec(
    plan: JailPlan,
    runtime: RuntimePlan,
    environment: str,
    patches: Mapping[int, Mapping[str, bytes]],
    bpf: bytes,
    outside_uid: int,
    cgroup_fds: tuple[int, ...],
    fds: tuple[int, int, int, int],
    setup: int,
    exit_pipe: int,
) -> None:
    """Never returns: execs the runtime, or reports the error on `setup` and exits 127."""
    report = [setup]
    try:
        if plan.subuid:
            _enter_own_user_namespace(setup, cgroup_fds)
        else:
            _leave_the_zygotes_world(setup, cgroup_fds)
        proxy = network.open_proxy_listener() if plan.egress_proxy else -1
        mounts.build_root(
            layers=plan.layers(runtime.name, environment),
            masked_dirs=runtime.masked_dirs,
            symlinks=plan.symlinks,
            etc_files=plan.etc_files,
            patches=patches,
            become=_become_sandbox_user if plan.subuid else None,
            mount_proc=plan.subuid,
        )
        if plan.subuid:
            mounts.mount_private(plan.scratch_bytes, SANDBOX_UID, proc=False)
            namespaces.set_hostname(SANDBOX_HOSTNAME)
            scratch = mounts.pick_scratch()  # for the pool's per-request resize
            _lock_down(
                plan.rlimits,
                bpf,
                fds,
                setup,
                exit_pipe,
                report,
                _Handed(proxy, scratch),
                open_out_dir=True,
            )
        else:
            _confine(
                plan.scratch_bytes,
                plan.rlimits,
                bpf,
                outside_uid,
                fds,
                setup,
                exit_pipe,
                report,
                _Handed(proxy),
            )
        argv = list(runtime.argv)
        if environment:  # the bootstrap's one argument: what it loads while warming
            argv.append(json.dumps(boot_environment(plan, environment)))
        runtime.exec(argv)
    except BaseException as e:
        _die(report[0], e)


def boot_environment(plan: JailPlan, environment: str) -> dict[str, Any]:
    """What a worker's bootstrap (or the Python template) loads from an environment before any
    request: where its packages are (Python: added to sys.path) and what to preload."""
    if not environment:
        return {"path": "", "preload": []}
    env = plan.environments[environment]
    path = ENVIRONMENT_MOUNT if env.runtime == "python" else NODE_MODULES_MOUNT
    return {"path": path, "preload": list(env.preload)}


def enter_forked(
    root: TemplateRoot,
    scratch_bytes: int,
    rlimits_plan: RlimitPlan,
    bpf: bytes,
    outside_uid: int,
    cgroup_fds: tuple[int, ...],
    fds: tuple[int, int, int, int],
    setup: int,
    exit_pipe: int,
    egress_proxy: bool = False,
) -> None:
    """In a child of the Python template: build a root of its own from the template's layers
    (mounts.build_root, stage "inherited"), confine, then return in the program (the init's
    child) to run the bootstrap in place. On error, reports on `setup` and exits 127."""
    report = [setup]
    try:
        _leave_the_zygotes_world(setup, cgroup_fds)
        proxy = network.open_proxy_listener() if egress_proxy else -1
        mounts.build_root(
            layers=root.layers,
            masked_dirs=root.masked_dirs,
            symlinks=root.symlinks,
            etc_files=root.etc_files,
            patches={index: {} for index in root.patched},
            stage="inherited",
        )
        _confine(
            scratch_bytes,
            rlimits_plan,
            bpf,
            outside_uid,
            fds,
            setup,
            exit_pipe,
            report,
            _Handed(proxy),
        )
    except BaseException as e:
        _die(report[0], e)


@dataclass(frozen=True)
class _Handed:
    """Descriptors the init hands the zygote (for the pool) with the seccomp listener; -1:
    none. `proxy`: the egress proxy's listening socket (jail/network.py); `scratch` (subuid
    mode): an fs context of the scratch tmpfs, for the per-request resize."""

    proxy: int = -1
    scratch: int = -1

    def named(self) -> list[tuple[str, int]]:
        pairs = (("proxy", self.proxy), ("scratch", self.scratch))
        return [(name, fd) for name, fd in pairs if fd >= 0]

    def moved_above(self, floor: int) -> _Handed:
        """The same open files on close-on-exec fds >= floor."""
        return _Handed(
            *(_move_above(fd, floor) if fd >= 0 else -1 for fd in (self.proxy, self.scratch))
        )


@dataclass(frozen=True)
class TemplateRoot:
    """What a child of the Python template needs to rebuild the template's root as its own:
    the template's layers as seen inside its root, which of them have a patch layer, and the
    rest of the root's plan."""

    layers: tuple[Bind, ...]
    patched: frozenset[int]
    masked_dirs: tuple[str, ...]
    symlinks: Mapping[str, str]
    etc_files: Mapping[str, str]

    @staticmethod
    def of(plan: JailPlan, runtime: str, environment: str, patched: frozenset[int]) -> TemplateRoot:
        return TemplateRoot(
            layers=tuple(
                Bind(b.jail_path, is_dir=b.is_dir, target=b.jail_path)
                for b in plan.layers(runtime, environment)
            ),
            patched=patched,
            masked_dirs=plan.runtimes[runtime].masked_dirs,
            symlinks=plan.symlinks,
            etc_files=plan.etc_files,
        )

    def to_marshal(self) -> dict[str, object]:
        return {
            "layers": [(b.jail_path, b.is_dir) for b in self.layers],
            "patched": sorted(self.patched),
            "masked_dirs": list(self.masked_dirs),
            "symlinks": dict(self.symlinks),
            "etc_files": dict(self.etc_files),
        }

    @staticmethod
    def from_marshal(raw: Mapping[str, Any]) -> TemplateRoot:
        return TemplateRoot(
            layers=tuple(Bind(p, is_dir=d, target=p) for p, d in raw["layers"]),
            patched=frozenset(raw["patched"]),
            masked_dirs=tuple(raw["masked_dirs"]),
            symlinks=raw["symlinks"],
            etc_files=raw["etc_files"],
        )


def _leave_the_zygotes_world(setup: int, cgroup_fds: tuple[int, ...]) -> None:
    """Die with the zygote; once released, move into the worker's cgroup, then into new mount,
    net, IPC, UTS and cgroup namespaces (the cgroup namespace rooted at that cgroup)."""
    namespaces.set_parent_death_signal()
    _wait_for(setup, b"go")
    cgroups.enter_self(cgroup_fds)
    namespaces.unshare(namespaces.CHILD_UNSHARE_FLAGS)


def _enter_own_user_namespace(setup: int, cgroup_fds: tuple[int, ...]) -> None:
    """Subuid mode: the child was cloned into its own user and PID namespaces. Once released,
    join the cgroup, have the zygote map the sandbox ids, then (with every capability in the
    new user namespace) make the mount, net, IPC, UTS and cgroup namespaces."""
    namespaces.set_parent_death_signal()
    _wait_for(setup, b"go")
    cgroups.enter_self(cgroup_fds)
    os.write(setup, b"map")
    _wait_for(setup, b"mapped")
    namespaces.unshare(namespaces.CHILD_UNSHARE_FLAGS)


def _become_sandbox_user() -> None:
    """Subuid mode: take the mapped ids. Our old ids (the daemon's) are unmapped in this
    namespace, so the switch keeps the namespace's capabilities (dropped in _lock_down)."""
    os.setgroups([])
    os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)


def _confine(
    scratch_bytes: int,
    rlimits_plan: RlimitPlan,
    bpf: bytes,
    outside_uid: int,
    fds: tuple[int, int, int, int],
    setup: int,
    exit_pipe: int,
    report: list[int],
    handed: _Handed,
) -> None:
    mounts.mount_private(scratch_bytes, outside_uid)
    namespaces.set_hostname(SANDBOX_HOSTNAME)
    # The user namespace comes last of all namespaces, made as the slot's own host uid (not as
    # root: the kernel charges a namespace's per-user budgets (inotify instances, queued
    # signals, message-queue bytes, ...) to the uid that created it, so root would share its
    # own with every worker); the zygote (real root) writes its uid/gid map. This works where
    # unprivileged user namespaces are disabled: the mounts above were made as real root.
    os.setgroups([])
    os.setresgid(outside_uid, outside_uid, outside_uid)
    os.setresuid(outside_uid, outside_uid, outside_uid)
    namespaces.unshare(namespaces.CLONE_NEWUSER)
    os.write(setup, b"map")
    _wait_for(setup, b"mapped")
    _lock_down(rlimits_plan, bpf, fds, setup, exit_pipe, report, handed)


def _lock_down(
    rlimits_plan: RlimitPlan,
    bpf: bytes,
    fds: tuple[int, int, int, int],
    setup: int,
    exit_pipe: int,
    report: list[int],
    handed: _Handed,
    *,
    open_out_dir: bool = False,
) -> None:
    """fds, rlimits, drop every capability, no_new_privs, seccomp last; then fork the program
    (jail/init.py), which returns here, while this process stays behind as its init (which, with
    `open_out_dir` (subuid mode), opens out/ to the pool before its report). The zygote
    gets the seccomp listener and the handed descriptors (the proxy's socket, the scratch fs
    context) from the init, named in the "ok" message; the program holds none of them, nor the
    setup socket (its errors go to its stderr)."""
    # Kept out of _install_fds' close, above the fds it installs.
    handed = handed.moved_above(EXIT_PIPE_FD + 1)
    named = handed.named()
    _install_fds(fds, setup, exit_pipe, keep=tuple(fd for _, fd in named))
    report[0] = SETUP_FD
    rlimits.apply_boot_rlimits(rlimits_plan)
    capabilities.drop_all_and_become(SANDBOX_UID, SANDBOX_UID)
    capabilities.set_no_new_privs()
    listener = seccomp.load_filter(bpf)
    program = init.start_program()
    if program == 0:
        init.close_in_program((listener, *(fd for _, fd in named), SETUP_FD, EXIT_PIPE_FD))
        report[0] = 2
        return
    setup_sock = socket.socket(fileno=SETUP_FD)
    message = b" ".join([b"ok", *(name.encode() for name, _ in named)])
    socket.send_fds(setup_sock, [message], [listener, *(fd for _, fd in named)])
    setup_sock.detach()
    for fd in (listener, *(fd for _, fd in named)):
        os.close(fd)
    init.serve_as_init(
        program,
        SETUP_FD,
        EXIT_PIPE_FD,
        (lambda: open_out.open_out(WORK_DIR, OUT_DIR)) if open_out_dir else None,
    )


def _die(report_fd: int, e: BaseException) -> None:
    try:
        os.write(report_fd, f"err {type(e).__name__}: {e}".encode())
    finally:
        os._exit(127)


def _wait_for(setup: int, word: bytes) -> None:
    if os.read(setup, 16) != word:
        raise RuntimeError(f"zygote did not send {word.decode()!r}")


def _install_fds(
    fds: tuple[int, int, int, int], setup: int, exit_pipe: int, keep: tuple[int, ...] = ()
) -> None:
    """Worker fds to 0..3, the setup socket to 4 and the exit pipe to 5 (both close-on-exec);
    close everything else but `keep` (close-on-exec, above 5)."""
    staged = [os.dup(fd) for fd in (*fds, setup, exit_pipe)]
    for target, fd in enumerate(staged):
        os.dup2(fd, target, inheritable=target < WORKER_FDS)
    close_all_but((*range(EXIT_PIPE_FD + 1), *keep))


def _move_above(fd: int, floor: int) -> int:
    """The same open file on a close-on-exec fd >= floor (_install_fds only writes below it)."""
    if fd >= floor:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    os.close(fd)
    return moved
