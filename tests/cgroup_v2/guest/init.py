"""PID 1 of the cgroup v2 VM (exec'd by the initramfs as `python3 -I` from the checkout share).

Mounts what a Debian system has (proc, sysfs, the unified cgroup hierarchy with nsdelegate,
tmpfs on /tmp, /run and /dev/shm, devpts), reads the command the host asked for from
/mnt/results/request.json, runs it with its output in /mnt/results/output.txt, reaps every
process reparented to it meanwhile, writes what it saw into /mnt/results/guest.json and the
exit status into /mnt/results/rc, and powers the VM off (sysrq). Python's standard library
only: nothing from the checkout is imported here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

RESULTS = "/mnt/results"
MOUNTS = (
    # (type, source, target, options)
    ("proc", "proc", "/proc", "nosuid,nodev,noexec"),
    ("sysfs", "sysfs", "/sys", "nosuid,nodev,noexec"),
    ("cgroup2", "cgroup2", "/sys/fs/cgroup", "nosuid,nodev,noexec,nsdelegate"),
    ("tmpfs", "tmpfs", "/run", "nosuid,nodev,mode=755"),
    ("tmpfs", "tmpfs", "/tmp", "nosuid,nodev,mode=1777"),
    ("tmpfs", "tmpfs", "/dev/shm", "nosuid,nodev,mode=1777"),
    ("devpts", "devpts", "/dev/pts", "nosuid,noexec,gid=5,mode=620,ptmxmode=666"),
)


def console(message: str) -> None:
    with open("/dev/console", "w") as f:
        f.write(f"guest init: {message}\n")


def mount_all() -> None:
    for fstype, source, target, options in MOUNTS:
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", "-t", fstype, "-o", options, source, target], check=True)
    os.makedirs("/dev/shm", exist_ok=True)
    if not os.path.exists("/dev/ptmx"):
        os.symlink("pts/ptmx", "/dev/ptmx")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
        if not os.path.exists(f"/dev/{name}"):
            os.symlink(target, f"/dev/{name}")


def facts() -> dict[str, object]:
    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            return f"unreadable: {e}"

    with open("/proc/self/mountinfo") as f:
        cgroup_mounts = [
            line.split(" - ")[1].split()[0] + " " + line.split()[4]
            for line in f
            if " - cgroup" in line
        ]
    return {
        "release": os.uname().release,
        "cmdline": read("/proc/cmdline"),
        "cgroup_mounts": cgroup_mounts,
        "controllers": read("/sys/fs/cgroup/cgroup.controllers"),
        "cpus": os.cpu_count(),
        "memory_kb": int(read("/proc/meminfo").split()[1]),
        "python": sys.version.split()[0],
    }


def run(request: dict[str, object]) -> int:
    argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
    timeout_s = float(request["timeout_s"])  # type: ignore[arg-type]
    with open(f"{RESULTS}/output.txt", "wb") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(request["cwd"]),
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    signal.signal(signal.SIGALRM, lambda *_: None)
    while True:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        try:
            pid, status = os.waitpid(-1, 0)  # every process reparented to us, too
        except InterruptedError:
            pid = 0
        except ChildProcessError:
            return 255
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            console(f"the tests ran past {timeout_s:.0f} s: killing them")
            with open(f"{RESULTS}/output.txt", "ab") as out:
                out.write(f"\nguest init: timed out after {timeout_s:.0f} s\n".encode())
            os.killpg(child.pid, signal.SIGKILL)
            deadline = float("inf")


def main() -> None:
    rc = 255
    try:
        mount_all()
        with open(f"{RESULTS}/guest.json", "w") as f:
            json.dump(facts(), f)
        with open(f"{RESULTS}/request.json") as f:
            request = json.load(f)
        console("running the tests")
        rc = run(request)
    except BaseException as e:
        console(f"{type(e).__name__}: {e}")
        with open(f"{RESULTS}/output.txt", "a") as out:
            out.write(f"\nguest init failed: {type(e).__name__}: {e}\n")
    finally:
        try:
            with open(f"{RESULTS}/rc", "w") as f:
                f.write(f"{rc}\n")
        finally:
            os.sync()
            console(f"exit status {rc}; powering off")
            with open("/proc/sysrq-trigger", "w") as f:
                f.write("o")
            time.sleep(60)


if __name__ == "__main__":
    main()
