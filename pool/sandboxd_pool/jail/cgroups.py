"""One cgroup per worker (memory incl. swap, pids, cpu), on cgroup v1 or v2 behind one interface.

    CgroupSetup.detect()      finds a writable hierarchy, creates the parent (`sandboxd`, or the
                              configured name: one per pool gives it a budget of its own), or
                              says why none is usable (the pool then falls back to rlimits)
    WorkerCgroup              paths of one worker's cgroup: add a pid, set limits, read facts,
                              kill everything in it, remove it

Facts (peak memory, OOM kills, CPU time) are read by the zygote after the worker is reaped,
and by the pool while it runs (CPU time), never asked of the worker.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

PARENT_NAME = "sandboxd"
PARENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PROBE_PREFIX = "probe-"  # + the pid of the process probing the hierarchy at start
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
V2_CONTROLLERS = ("memory", "pids", "cpu")
UNIFIED = "unified"


@dataclass(frozen=True)
class CgroupFacts:
    peak_memory_bytes: int = 0
    oom_kills: int = 0
    cpu_time_ns: int = 0
    pids_limit_hits: int = 0


@dataclass(frozen=True)
class CgroupSetup:
    """Where worker cgroups go. version 0 means none is usable; `reason` says why."""

    version: int
    parents: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""

    @staticmethod
    def detect(root: str | None = None, parent_name: str = PARENT_NAME) -> CgroupSetup:
        """Find a writable hierarchy. `root` forces one: a v2 dir, or a v1 mount dir like
        /sys/fs/cgroup (holding memory/, pids/, ...). Worker cgroups go under `parent_name`
        (one directory name, made in each hierarchy)."""
        if not PARENT_NAME_PATTERN.fullmatch(parent_name):
            raise ValueError(f"cgroup parent name {parent_name!r} is not one plain directory name")
        reasons: list[str] = []
        if root is not None:  # forced: that hierarchy or none, never the host's others
            if _is_v2(root):
                setup = _try_v2(root, reasons, parent_name)
            else:
                v1 = {c: os.path.join(root, c) for c in V1_CONTROLLERS}
                setup = _try_v1(v1, reasons, parent_name)
            return setup or CgroupSetup(version=0, reason="; ".join(reasons))
        mounts = _cgroup_mounts()
        if UNIFIED in mounts:
            setup = _try_v2(mounts[UNIFIED], reasons, parent_name)
            if setup:
                return setup
        v1_mounts = {c: mounts[c] for c in V1_CONTROLLERS if c in mounts}
        if v1_mounts:
            setup = _try_v1(v1_mounts, reasons, parent_name)
            if setup:
                return setup
        if not mounts:
            reasons.append("no cgroup filesystem is mounted")
        return CgroupSetup(version=0, reason="; ".join(reasons))

    def ensure_parents(self) -> None:
        """Make the parent cgroups again if they are gone: another pool sharing the parent name
        removes it when it closes and finds it empty, which can race with our next worker."""
        for path in self.parents.values():
            os.makedirs(path, exist_ok=True)
            if self.version == 2:
                _write(path, "cgroup.subtree_control", " ".join(f"+{c}" for c in V2_CONTROLLERS))
            elif path == self.parents.get("memory"):
                with contextlib.suppress(OSError):
                    _write(path, "memory.use_hierarchy", "1")

    def worker(self, name: str) -> WorkerCgroup:
        return WorkerCgroup(
            version=self.version, paths={c: os.path.join(p, name) for c, p in self.parents.items()}
        )

    def sweep(self) -> list[str]:
        """Remove worker cgroups whose zygote (named in the cgroup's name: zPID-N) is dead,
        and start-up probes (probe-PID, see _probe) of a process that died mid-probe."""
        removed: list[str] = []
        names: set[str] = set()
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                names.update(e for e in os.listdir(parent) if e.startswith(("z", PROBE_PREFIX)))
        for name in sorted(names):
            # a probe's owner is whatever process started the pool: any live process with
            # its pid counts (a reused pid only delays the sweep); a zygote is checked by name
            probe = name.startswith(PROBE_PREFIX)
            owner = name[len(PROBE_PREFIX) :] if probe else name[1:].split("-", 1)[0]
            if owner.isdigit() and _alive(int(owner), zygote=not probe):
                continue
            cg = self.worker(name)
            cg.kill_all()
            if cg.remove():
                removed.append(name)
        return removed


@dataclass(frozen=True)
class WorkerCgroup:
    version: int
    paths: Mapping[str, str]

    def create(self) -> None:
        for path in self.paths.values():
            os.mkdir(path)

    def open_for_entry(self) -> list[int]:
        """fds through which a single-threaded process moves itself in (see enter_self).

        On v1 a thread writing "0" to `tasks` moves itself without the global threadgroup lock
        whose RCU synchronisation makes a write of another pid to cgroup.procs cost 8-27 ms
        per hierarchy (measured here); the worker does this itself in well under 1 ms. The fds
        are opened by the zygote: the worker may already live in a root without /sys."""
        name = "tasks" if self.version == 1 else "cgroup.procs"
        return [os.open(f"{p}/{name}", os.O_WRONLY | os.O_CLOEXEC) for p in self.paths.values()]

    def set_limits(self, memory_bytes: int, max_processes: int, cpu_cores: float = 0.0) -> None:
        if self.version == 2:
            p = self.paths[UNIFIED]
            _write(p, "memory.max", str(memory_bytes))
            _write_optional(p, "memory.swap.max", "0")
            _write(p, "pids.max", str(max_processes))
            if cpu_cores:
                _write(p, "cpu.max", f"{int(cpu_cores * 100_000)} 100000")
            return
        mem = self.paths["memory"]
        _write_memory_v1(mem, memory_bytes)
        _write(self.paths["pids"], "pids.max", str(max_processes))
        if cpu_cores and "cpu" in self.paths:
            _write(self.paths["cpu"], "cpu.cfs_period_us", "100000")
            _write(self.paths["cpu"], "cpu.cfs_quota_us", str(int(cpu_cores * 100_000)))

    def cpu_time_ns(self) -> int:
        try:
            if self.version == 2:
                stat = _read_keyed(self.paths[UNIFIED], "cpu.stat")
                return stat.get("usage_usec", 0) * 1000
            return int(_read(self.paths["cpuacct"], "cpuacct.usage"))
        except (OSError, ValueError):
            return 0

    def facts(self) -> CgroupFacts:
        try:
            if self.version == 2:
                p = self.paths[UNIFIED]
                events = _read_keyed(p, "memory.events")
                pids_events = _read_keyed(p, "pids.events")
                peak = _read(p, "memory.peak") if os.path.exists(f"{p}/memory.peak") else "0"
                return CgroupFacts(
                    peak_memory_bytes=int(peak),
                    oom_kills=events.get("oom_kill", 0),
                    cpu_time_ns=self.cpu_time_ns(),
                    pids_limit_hits=pids_events.get("max", 0),
                )
            mem = self.paths["memory"]
            oom = _read_keyed(mem, "memory.oom_control")
            pids_events = _read_keyed(self.paths["pids"], "pids.events")
            return CgroupFacts(
                peak_memory_bytes=int(_read(mem, "memory.max_usage_in_bytes")),
                oom_kills=oom.get("oom_kill", 0),
                cpu_time_ns=self.cpu_time_ns(),
                pids_limit_hits=pids_events.get("max", 0),
            )
        except (OSError, ValueError):
            return CgroupFacts()

    def kill_all(self) -> None:
        """SIGKILL everything left in the cgroup (a worker is normally gone with its PID ns)."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.paths[UNIFIED], "cgroup.kill", "1")
            return
        for path in self.paths.values():
            try:
                pids = _read(path, "cgroup.procs").split()
            except OSError:
                continue
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)

    def remove(self, timeout_s: float = 2.0) -> bool:
        """rmdir every controller's dir; retries while the last processes finish exiting."""
        deadline = time.monotonic() + timeout_s
        pending = [p for p in self.paths.values() if os.path.isdir(p)]
        while pending:
            still = []
            for path in pending:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise
                    still.append(path)
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
        return True


def _write(path: str, name: str, value: str) -> None:
    with open(f"{path}/{name}", "w") as f:
        f.write(value)


def _write_optional(path: str, name: str, value: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _write(path, name, value)


def _write_memory_v1(path: str, memory_bytes: int) -> None:
    """memory.limit_in_bytes must stay <= memory.memsw.limit_in_bytes: order the two writes."""
    has_memsw = os.path.exists(f"{path}/memory.memsw.limit_in_bytes")
    if not has_memsw:
        _write(path, "memory.limit_in_bytes", str(memory_bytes))
        return
    current = int(_read(path, "memory.limit_in_bytes"))
    order = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
    if memory_bytes > current:
        order = order[::-1]
    for name in order:
        _write(path, name, str(memory_bytes))


def _read(path: str, name: str) -> str:
    with open(f"{path}/{name}") as f:
        return f.read().strip()


def _read_keyed(path: str, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = _read(path, name)
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _alive(pid: int, *, zygote: bool = True) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not zygote:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"sandboxd_pool" in f.read()
    except OSError:
        return False


def _cgroup_mounts() -> dict[str, str]:
    """controller -> mount point for v1 hierarchies, and UNIFIED -> the cgroup2 mount."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype, _source, *opts = right.split()
        mount_point = fields[4]
        if fstype == "cgroup2":
            found.setdefault(UNIFIED, mount_point)
        elif fstype == "cgroup":
            options = set(opts[0].split(",")) if opts else set()
            for controller in V1_CONTROLLERS:
                if controller in options:
                    found.setdefault(controller, mount_point)
    return found


def _is_v2(path: str) -> bool:
    return os.path.exists(os.path.join(path, "cgroup.controllers"))


def _try_v2(mount_point: str, reasons: list[str], parent_name: str) -> CgroupSetup | None:
    available = (
        set(_read(mount_point, "cgroup.controllers").split()) if _is_v2(mount_point) else set()
    )
    missing = [c for c in V2_CONTROLLERS if c not in available]
    if missing:
        reasons.append(f"cgroup v2 at {mount_point} lacks controllers {','.join(missing)}")
        return None
    parent = os.path.join(mount_point, parent_name)
    try:
        enable = " ".join(f"+{c}" for c in V2_CONTROLLERS)
        _write(mount_point, "cgroup.subtree_control", enable)
        os.makedirs(parent, exist_ok=True)
        _write(parent, "cgroup.subtree_control", enable)
        _probe(CgroupSetup(version=2, parents={UNIFIED: parent}))
    except OSError as e:
        reasons.append(f"cgroup v2 at {mount_point} is not writable ({e.strerror or e})")
        return None
    return CgroupSetup(version=2, parents={UNIFIED: parent})


def _try_v1(mounts: Mapping[str, str], reasons: list[str], parent_name: str) -> CgroupSetup | None:
    missing = [c for c in V1_CONTROLLERS if c not in mounts or not os.path.isdir(mounts[c])]
    if missing:
        reasons.append(f"cgroup v1 lacks controllers {','.join(missing)}")
        return None
    parents = {c: os.path.join(m, parent_name) for c, m in mounts.items()}
    try:
        for path in parents.values():
            os.makedirs(path, exist_ok=True)
        with contextlib.suppress(OSError):
            _write(parents["memory"], "memory.use_hierarchy", "1")
        _probe(CgroupSetup(version=1, parents=parents))
    except OSError as e:
        reasons.append(f"cgroup v1 is not writable ({e.strerror or e})")
        return None
    return CgroupSetup(version=1, parents=parents)


def _probe(setup: CgroupSetup) -> None:
    cg = setup.worker(f"{PROBE_PREFIX}{os.getpid()}")
    cg.create()
    try:
        cg.set_limits(64 * 1024 * 1024, 16)
    finally:
        cg.remove()


def enter_self(entry_fds: tuple[int, ...]) -> None:
    """Move the calling single-threaded process into the cgroup opened by open_for_entry."""
    for fd in entry_fds:
        os.write(fd, b"0")
        os.close(fd)
