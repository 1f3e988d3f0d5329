"""Startup preflight: check what the jail needs before the pool starts, and fail fast.

`sandboxd serve` calls `check()` before it starts the pool. Every missing piece is a
`Problem` naming what to grant (a podman/docker flag, a Kubernetes setting); the daemon then
exits 2 at once instead of serving with workers that can never boot (or hanging on them).

Checked, in a throwaway child process (forked before any thread exists):
  user namespaces   the child creates one (the jail's first step in subuid mode, its last in
                    root mode); fails where user.max_user_namespaces is 0 or a seccomp profile
                    forbids it
  /proc             inside that user namespace, a new PID and mount namespace and a fresh /proc
                    mount; the kernel refuses it (EPERM) where the existing /proc is partly
                    masked, as podman and docker mask it unless `systempaths=unconfined`
  hostname          in the namespaces above, a new UTS namespace and sethostname (the workers'
                    hostname); container runtimes' default seccomp profiles refuse it without
                    CAP_SYS_ADMIN in the container
  newuidmap         non-root only: /usr/bin/newuidmap and newgidmap exist, and the process may
                    gain privileges (no `no-new-privileges`), or they cannot write a map
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
NEWUIDMAP = "/usr/bin/newuidmap"
NEWGIDMAP = "/usr/bin/newgidmap"

PROC_FIX = (
    "mounting a fresh /proc in a new PID namespace is refused ({error}): this container's "
    "/proc is masked. Run it with `--security-opt systempaths=unconfined` (podman, docker) or, "
    "in Kubernetes, `securityContext.procMount: Unmasked` (needs the ProcMountType feature and "
    "`hostUsers: false`); see docs/operations.md 'Running in a container'"
)
USERNS_FIX = (
    "cannot create a user namespace ({error}): the workers need one. On the host: sysctl "
    "user.max_user_namespaces > 0 (and kernel.unprivileged_userns_clone=1 where it exists); in "
    "a container: a seccomp profile allowing unshare/clone with CLONE_NEWUSER (podman's and "
    "docker's default profiles do; `--security-opt seccomp=unconfined` to check)"
)
HOSTNAME_FIX = (
    "setting a worker's hostname in its own UTS namespace is refused ({error}): this "
    "container's seccomp profile allows sethostname only with CAP_SYS_ADMIN (podman's and "
    "docker's default profiles). Run it with `--security-opt seccomp=PROFILE` (podman, docker), "
    "PROFILE made by `sandboxd seccomp-profile` (the runtime's default plus the jail's system "
    "calls), or, in Kubernetes, that file as a `seccompProfile: {{type: Localhost}}`; see "
    "docs/operations.md 'Running in a container'"
)
HELPER_FIX = (
    "{helper} is missing: a non-root daemon maps each worker to a subordinate id with "
    "newuidmap/newgidmap (Debian package `uidmap`)"
)
NNP_FIX = (
    "no_new_privs is set on the daemon, so newuidmap/newgidmap cannot gain the capability they "
    "need to write a worker's uid map. Do not run with `--security-opt no-new-privileges`; in "
    "Kubernetes set `securityContext.allowPrivilegeEscalation: true`"
)


@dataclass(frozen=True)
class Problem:
    what: str  # "user namespaces", "hostname", "/proc", "newuidmap", "no_new_privs"
    message: str  # what is wrong and the flag or setting that fixes it


def check() -> list[Problem]:
    """Every problem found (empty: the jail can be built here)."""
    problems = _namespaces()
    if os.geteuid() != 0:
        problems += _helpers()
    return problems


def _helpers(status_path: str = "/proc/self/status") -> list[Problem]:
    problems = [
        Problem("newuidmap", HELPER_FIX.format(helper=helper))
        for helper in (NEWUIDMAP, NEWGIDMAP)
        if not os.access(helper, os.X_OK)
    ]
    try:
        with open(status_path) as f:
            no_new_privs = any(line.split() == ["NoNewPrivs:", "1"] for line in f)
    except OSError:
        no_new_privs = False
    if no_new_privs:
        problems.append(Problem("no_new_privs", NNP_FIX))
    return problems


def _namespaces() -> list[Problem]:
    """Fork a child that makes a user namespace, then a PID + mount namespace in which its own
    child mounts /proc; the child reports each failure as a line "STAGE ERRNO" on a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        os.close(read_fd)
        code = 0
        try:
            report = _child_probe()
            os.write(write_fd, report.encode())
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        report = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    problems = []
    for line in report.splitlines() or ["userns unknown"]:
        stage, _, number = line.partition(" ")
        if stage == "ok":
            continue
        problems.append(_problem(stage, number))
    return problems


def _problem(stage: str, number: str) -> Problem:
    error = errno.errorcode.get(int(number), number) if number.isdigit() else "unknown error"
    error = f"{error}: {os.strerror(int(number))}" if number.isdigit() else error
    if stage == "proc":
        return Problem("/proc", PROC_FIX.format(error=error))
    if stage == "hostname":
        return Problem("hostname", HOSTNAME_FIX.format(error=error))
    return Problem("user namespaces", USERNS_FIX.format(error=error))


def _child_probe() -> str:  # pragma: no cover - runs in the forked child
    """One 'STAGE ERRNO' line per failed stage ('ok 0' if none); a failed user namespace
    stops the probe, as nothing else can be tried without one."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        return f"userns {ctypes.get_errno()}"
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    except OSError as e:
        return f"userns {e.errno}"
    if libc.unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS) != 0:
        return f"userns {ctypes.get_errno()}"
    failed = []
    if libc.sethostname(b"sandbox", 7) != 0:
        failed.append(f"hostname {ctypes.get_errno()}")
    grandchild = os.fork()
    if grandchild == 0:
        status = 0
        if (
            libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0
            or libc.mount(b"proc", b"/proc", b"proc", 0, None) != 0
        ):
            status = 100 + ctypes.get_errno()
        os._exit(min(status, 255))
    _, wait_status = os.waitpid(grandchild, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        failed.append(f"proc {code - 100 if code >= 100 else errno.EIO}")
    return "\n".join(failed) or "ok 0"


def message(problems: list[Problem]) -> str:
    return "\n".join(f"sandboxd serve: error: {p.message}" for p in problems)
