"""What a running (or dead) daemon leaves on the host, seen from outside: its process tree,
its workers' cgroups, processes in those cgroups that are no longer in its tree, its mounts,
its open fds and its RSS.

Other sandboxd instances may run on this machine at the same time (other checkouts, other test
sessions), so everything is attributed by owner: a worker cgroup is named `z<zygote pid>-<n>`
under the parent cgroup (`sandboxd` or --cgroup-parent) of each hierarchy, and only the zygotes
of the daemon under test count.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

ZYGOTE_MODULE = "sandboxd_pool._in_zygote"
TEMPLATE_SCRIPT = "python_template.py"
# Mounts made by container tooling running next to us on the shared machine, not by sandboxd.
# Container tooling's own mounts, never the daemon's: podman's default places and the storage
# tests/container gives it (another test session's containers may come and go meanwhile).
FOREIGN_MOUNT_PREFIXES = (
    "/var/lib/containers",
    "/run/containers",
    "/run/user",
    "/run/netns",
    "/var/cache/sandboxd-test/storage",
    "/run/sandboxd-test",
)


@dataclass(frozen=True)
class ProcessSample:
    """One process's resource use at one moment."""

    fd_count: int
    rss_bytes: int

    def __str__(self) -> str:
        return f"{self.fd_count} fds, RSS {self.rss_bytes / 2**20:.1f} MiB"


def sample(pid: int) -> ProcessSample:
    return ProcessSample(
        fd_count=len(os.listdir(f"/proc/{pid}/fd")),
        rss_bytes=psutil.Process(pid).memory_info().rss,
    )


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def zygote_of(daemon_pid: int) -> int | None:
    """The daemon's live zygote (a direct child running sandboxd_pool._in_zygote), if any."""
    try:
        children = psutil.Process(daemon_pid).children()
    except psutil.NoSuchProcess:
        return None
    zygotes = [c.pid for c in children if ZYGOTE_MODULE in cmdline(c.pid)]
    assert len(zygotes) <= 1, f"daemon {daemon_pid} has several zygotes: {zygotes}"
    return zygotes[0] if zygotes else None


def cgroup_roots() -> list[str]:
    """Mount points of every cgroup hierarchy (v1 and v2)."""
    roots: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0] if right else ""
            if fstype in ("cgroup", "cgroup2") and left.split()[4] not in roots:
                roots.append(left.split()[4])
    return roots


def worker_cgroups(zygote_pids: Iterable[int]) -> set[str]:
    """Every worker cgroup directory (all hierarchies, any parent name: `sandboxd` or a
    daemon's --cgroup-parent) named after one of these zygotes."""
    prefixes = tuple(f"z{pid}-" for pid in zygote_pids)
    found: set[str] = set()
    if not prefixes:
        return found
    for root in cgroup_roots():
        try:
            parents = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for parent in parents:
            try:
                names = os.listdir(parent.path)
            except OSError:
                continue
            found.update(os.path.join(parent.path, n) for n in names if n.startswith(prefixes))
    return found


def cgroup_names_of(pid: int) -> set[str]:
    """Names of the worker cgroups (`z<zygote>-<n>`) the process is in, all hierarchies."""
    names: set[str] = set()
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                path = line.rstrip("\n").split(":", 2)[2]
                match = re.search(r"^/[^/]+/(z\d+-\d+)$", path)
                if match:
                    names.add(match.group(1))
    except OSError:
        pass
    return names


def processes_in_worker_cgroups(zygote_pids: Iterable[int]) -> set[int]:
    """Host pids of every process in a worker cgroup of these zygotes."""
    prefixes = tuple(f"z{pid}-" for pid in zygote_pids)
    found: set[int] = set()
    if not prefixes:
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit() and any(n.startswith(prefixes) for n in cgroup_names_of(int(entry))):
            found.add(int(entry))
    return found


def children_of(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children()}
    except psutil.NoSuchProcess:
        return set()


def worker_cmdline(init_pid: int) -> str:
    """A worker's command line: its program's (the init's child), which names the bootstrap;
    the init itself is a fork of the zygote or of the Python template."""
    programs = children_of(init_pid)
    return cmdline(next(iter(programs))) if len(programs) == 1 else cmdline(init_pid)


def open_fds(pid: int) -> int | None:
    """How many descriptors a process holds; None once it is gone (or unreadable)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def processes_with(token: str) -> list[int]:
    """Host pids whose command line contains `token` (a background process's unique argument)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != str(os.getpid()) and token in cmdline(int(entry)):
            found.append(int(entry))
    return found


def mount_points() -> set[str]:
    """Mount points of this (the host's) mount namespace, but for container tooling's."""
    points: set[str] = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if not point.startswith(FOREIGN_MOUNT_PREFIXES):
                points.add(point)
    return points


@dataclass(frozen=True)
class TreeReport:
    """A daemon's process tree at rest: zygote, Python template, warm workers, nothing else."""

    zygote_pid: int
    template_pids: frozenset[int]
    worker_pids: frozenset[int]  # direct children of the zygote in a worker cgroup: the inits
    program_pids: frozenset[int]  # each worker init's one child: the warm program
    # each warm Python program's one child: its exit helper (python_boot.py), holding no fd
    exit_helper_pids: frozenset[int]
    strays: frozenset[int]  # any other descendant of the daemon (a program's child, ...)
    orphans: frozenset[int]  # in one of its worker cgroups but not in its tree

    def describe(self, pids: Iterable[int]) -> list[str]:
        return [f"{pid}: {cmdline(pid)[:120]}" for pid in sorted(pids)]


def tree(daemon_pid: int, zygote_pids: Iterable[int]) -> TreeReport:
    zygote = zygote_of(daemon_pid)
    assert zygote is not None, f"daemon {daemon_pid} has no zygote"
    everything = descendants(daemon_pid)
    direct = {p.pid for p in psutil.Process(zygote).children()}
    # Python workers are forked from the template (same command line) but each moved into a
    # worker cgroup of its own; the template is in none.
    workers = {pid for pid in direct if cgroup_names_of(pid)}
    templates = {pid for pid in direct - workers if TEMPLATE_SCRIPT in cmdline(pid)}
    programs = {c for pid in workers for c in children_of(pid)}
    helpers = {
        c
        for pid in programs
        if "python_boot.py" in cmdline(pid) or TEMPLATE_SCRIPT in cmdline(pid)
        for c in children_of(pid)
        if open_fds(c) == 0
    }
    strays = everything - {zygote} - templates - workers - programs - helpers
    in_cgroups = processes_in_worker_cgroups([*zygote_pids, zygote])
    return TreeReport(
        zygote_pid=zygote,
        template_pids=frozenset(templates),
        worker_pids=frozenset(workers),
        program_pids=frozenset(programs),
        exit_helper_pids=frozenset(helpers),
        strays=frozenset(strays),
        orphans=frozenset(in_cgroups - everything),
    )


def wait_nothing_left(
    daemon_pid: int,
    zygote_pids: Iterable[int],
    mounts_before: set[str],
    tmpdir: str | None = None,
    timeout_s: float = 30.0,
) -> None:
    """After a daemon ended (drained or killed): wait until nothing of it remains, or fail
    naming what does: its descendants, its zygotes, their worker cgroups and any process in
    them, host mounts that were not there before, files in its TMPDIR."""
    zygotes = set(zygote_pids)
    deadline = time.monotonic() + timeout_s
    while True:
        left = {
            "descendants": descendants(daemon_pid),
            "zygotes alive": {z for z in zygotes if ZYGOTE_MODULE in cmdline(z)},
            "worker cgroups": worker_cgroups(zygotes),
            "processes in worker cgroups": processes_in_worker_cgroups(zygotes),
            "new mounts": mount_points() - mounts_before,
            "files in the daemon's TMPDIR": set(os.listdir(tmpdir)) if tmpdir else set(),
        }
        if not any(left.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: { {k: v for k, v in left.items() if v} }")
        time.sleep(0.1)
