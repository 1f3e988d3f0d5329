"""What a result was measured on: date, CPUs, kernel, versions, cgroup version, commit."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

from bench.runtimes import BenchRuntime, clean_env

REPO = Path(__file__).resolve().parent.parent


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, env=clean_env(), capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cgroup_version() -> str:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "v2"
    if Path("/sys/fs/cgroup/memory").is_dir():
        return "v1"
    return "none"


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "pool"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' (pool/ has uncommitted changes)' if dirty else ''}" if head else "unknown"


def machine_info(runtimes: list[BenchRuntime]) -> dict[str, str]:
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "os": _os_release(),
        "cgroups": _cgroup_version(),
        "loadavg at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "commit": _git_commit(),
        "bwrap": _run(["bwrap", "--version"]) or "missing",
        "unshare": _run(["unshare", "--version"]) or "missing",
    }
    for runtime in runtimes:
        version = _run([runtime.interpreter, "--version"])
        info[runtime.name] = f"{runtime.interpreter} ({version})"
    return info


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()
