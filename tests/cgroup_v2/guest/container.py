"""A container made by hand, as a container runtime makes one for the sandboxd image (run as
root in the VM; no image, the guest's own files):

    python3 container.py CGROUP OUTER_UID rw|ro UID CAPS -- COMMAND...

- its cgroup CGROUP, already made (and, to delegate it, chowned to OUTER_UID) by the caller;
  the container's first process is created inside it (CLONE_INTO_CGROUP), so nothing of the
  runtime stays in it, as with podman's conmon, which lives in a cgroup of its own;
- a user namespace mapping container ids 0..65535 to OUTER_UID.. (a rootless or
  --userns=auto podman, a Kubernetes pod with hostUsers: false), and its own PID, mount, UTS,
  IPC and cgroup namespaces (the cgroup namespace rooted at CGROUP); the host's network;
- a fresh /proc, and the cgroup2 filesystem mounted at /sys/fs/cgroup read-write (rw: podman's
  --security-opt unmask=/sys/fs/cgroup, CRI-O's cgroup2-mount-hierarchy-rw, containerd's
  cgroup_writable) or read-only (ro: every runtime's default);
- COMMAND runs as container uid UID with the bounding set CAPS (podman's default set, say).

This process stays outside as the container's parent: it forwards SIGTERM and SIGINT, and
exits with the container's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from sandboxd_pool.jail import cgroups, namespaces

CLONE_NEWIPC = 0x08000000
CONTAINER_IDS = 65536
FLAGS = (
    namespaces.CLONE_NEWUSER
    | namespaces.CLONE_NEWPID
    | namespaces.CLONE_NEWNS
    | namespaces.CLONE_NEWUTS
    | CLONE_NEWIPC
)


def inside(ready: int, cgroup_mode: str, uid: int, caps: str, command: list[str]) -> None:
    os.read(ready, 1)  # the id maps are written
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    namespaces.unshare(namespaces.CLONE_NEWCGROUP)  # rooted at the cgroup we were created in
    for argv in (
        ["mount", "--make-rprivate", "/"],
        ["mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", "/proc"],
        # the host's cgroup2 mount is under ours: the same filesystem cannot be mounted again
        # on it, so over a tmpfs
        ["mount", "-t", "tmpfs", "-o", "size=4k,mode=755", "container", "/sys/fs/cgroup"],
        ["mount", "-t", "cgroup2", "-o", f"{cgroup_mode},nosuid,nodev,noexec", "container",
         "/sys/fs/cgroup"],
    ):  # fmt: skip
        subprocess.run(argv, check=True)
    namespaces.set_hostname("container")
    setpriv = ["setpriv", f"--bounding-set=-all,{caps}", "--inh-caps=-all"]
    if uid != 0:
        setpriv += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    os.execvp(setpriv[0], [*setpriv, "--", *command])


def main() -> None:
    cgroup, outer, cgroup_mode, uid, caps, sep, *command = sys.argv[1:]
    assert sep == "--" and cgroup_mode in ("rw", "ro") and command, sys.argv
    ready_r, ready_w = os.pipe()
    directory = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    pid = cgroups.clone_into(FLAGS, directory)
    if pid == 0:
        try:
            os.close(ready_w)
            inside(ready_r, cgroup_mode, int(uid), caps, command)
        finally:
            os._exit(127)
    os.close(directory)
    os.close(ready_r)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(f"0 {outer} {CONTAINER_IDS}\n")
    os.write(ready_w, b"x")
    os.close(ready_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
