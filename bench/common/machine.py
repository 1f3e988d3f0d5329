"""What a result was measured on: date, CPUs, kernel, versions, cgroup version, commit."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

from bench.common.runtimes import BenchRuntime, clean_env

REPO = Path(__file__).resolve().parents[2]


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


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _git_commit() -> str:
    return _git("rev-parse", "--short", "HEAD") or "unknown"


def engine_source(module_file: str | None) -> str:
    """Where the measured sandboxd_pool came from, and whether it is committed code."""
    if not module_file:
        return "unknown"
    package_dir = Path(module_file).resolve().parent
    try:
        package_dir.relative_to(REPO)
    except ValueError:
        return str(package_dir)
    dirty = _git("status", "--porcelain", "--", "pool")
    state = "with uncommitted changes in pool/" if dirty else "clean"
    return f"{package_dir} (this checkout at {_git_commit()}, {state})"


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
