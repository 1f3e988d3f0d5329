"""One cgroup per worker (memory incl. swap, pids, cpu), on cgroup v1 or v2 behind one interface.

    CgroupSetup.detect()      finds a writable hierarchy, creates the parent (`sandboxd`, or the
                              configured name: one per pool gives it a budget of its own), or
                              says why none is usable (the pool then falls back to rlimits)
    WorkerCgroup              paths of one worker's cgroup: add a pid, set limits, read facts,
                              kill everything in it, remove it
    clone_into()              v2: create a process directly inside a worker's cgroup

Facts (peak memory, OOM kills, CPU time) are read by the zygote after the worker is reaped,
and by the pool while it runs (CPU time), never asked of the worker.

Where the parent goes on v2 (see _v2_base): in the cgroup delegated to this process if it has
one, else at the top of the hierarchy. Delegated means this process's own cgroup is the root of
its cgroup namespace (a container given its cgroup read-write), or carries systemd's delegate
mark (a unit with Delegate=yes), or belongs to this process's non-root user. A cgroup that holds
processes cannot enable controllers for its children (cgroup v2's "no internal processes" rule),
so the processes of the delegated cgroup (this one, its threads) move into a leaf DAEMON_LEAF,
and the parent is made beside it: <delegated>/daemon, <delegated>/<parent>/z<zygote>-<n>.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._libc import fork_with

PARENT_NAME = "sandboxd"
DAEMON_LEAF = "daemon"  # v2, delegated cgroup: where the daemon's own processes go
# One directory name; not DAEMON_LEAF, which sits beside the parent in a delegated cgroup.
PARENT_NAME_PATTERN = re.compile(rf"(?!{DAEMON_LEAF}\Z)[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")
PROBE_PREFIX = "probe-"  # + the pid of the process probing the hierarchy at start
# systemd sets one of these to "1" on the cgroup of a unit with Delegate=yes.
DELEGATE_XATTRS = ("trusted.delegate", "user.delegate")
SYS_clone3 = 435
CLONE_PARENT = 0x00008000
CLONE_INTO_CGROUP = 0x200000000
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
    placement: str = ""  # v2: where the parent went and why (the pool logs it)

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
        mounts, unified_root = _cgroup_mounts()
        if UNIFIED in mounts:
            setup = _try_v2(mounts[UNIFIED], reasons, parent_name, unified_root)
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

    def probe_clone_into(self) -> str:
        """Why clone_into() cannot be used here, or "" when it can. It cannot on v1, before
        Linux 5.7, or under a seccomp policy that refuses clone3 (ENOSYS, as container runtimes'
        default profiles may). Tried once, with a child that exits at once, in a probe cgroup."""
        if self.version != 2:
            return "cgroup v1"
        cg = self.worker(f"{PROBE_PREFIX}{os.getpid()}")
        cg.create()
        try:
            directory = cg.open_dir()
            try:
                pid = clone_into(0, directory)
            except OSError as e:
                return str(e)
            finally:
                os.close(directory)
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            return ""
        finally:
            cg.remove()


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

    def open_dir(self) -> int:
        """v2: an fd of the cgroup's directory, for clone_into()."""
        return os.open(self.paths[UNIFIED], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

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

    def facts(self, largest_process_bytes: int = 0) -> CgroupFacts:
        """What the kernel counted. v2 before Linux 5.19 has no memory.peak: the peak is then
        `largest_process_bytes` (the caller's rusage maxrss of the reaped worker), the closest
        figure the kernel offers once the processes are gone."""
        try:
            if self.version == 2:
                p = self.paths[UNIFIED]
                events = _read_keyed(p, "memory.events")
                pids_events = _read_keyed(p, "pids.events")
                has_peak = os.path.exists(f"{p}/memory.peak")
                peak = int(_read(p, "memory.peak")) if has_peak else largest_process_bytes
                return CgroupFacts(
                    peak_memory_bytes=peak,
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
        """SIGKILL everything left in the cgroup (a worker is normally gone with its PID ns).
        v2: cgroup.kill (Linux >= 5.14) kills the whole tree at once, also processes forked
        meanwhile; without it, each listed process, as on v1."""
        if self.version == 2:
            try:
                _write(self.paths[UNIFIED], "cgroup.kill", "1")
                return
            except OSError:
                pass
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
    """One write(2) of the whole value, as the kernel's cgroup files expect (raw descriptors:
    these run on an execution's path, where a Python file object costs more than the call)."""
    fd = os.open(f"{path}/{name}", os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


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
    fd = os.open(f"{path}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().strip()


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


def _cgroup_mounts() -> tuple[dict[str, str], str]:
    """controller -> mount point for v1 hierarchies, and UNIFIED -> the cgroup2 mount; and the
    cgroup2 mount's root (the cgroup it shows at its top: "/" unless a subtree was mounted)."""
    found: dict[str, str] = {}
    unified_root = "/"
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return found, unified_root
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype, _source, *opts = right.split()
        mount_point = fields[4]
        if fstype == "cgroup2":
            # the first one, or one mounted over it later (a container's, over the host's)
            if found.get(UNIFIED, mount_point) == mount_point:
                found[UNIFIED], unified_root = mount_point, fields[3]
        elif fstype == "cgroup":
            options = set(opts[0].split(",")) if opts else set()
            for controller in V1_CONTROLLERS:
                if controller in options:
                    found.setdefault(controller, mount_point)
    return found, unified_root


def _is_v2(path: str) -> bool:
    return os.path.exists(os.path.join(path, "cgroup.controllers"))


def _try_v2(
    mount_point: str, reasons: list[str], parent_name: str, mount_root: str | None = None
) -> CgroupSetup | None:
    """The parent in the delegated cgroup or at the top (see _v2_base); `mount_root` None: a
    forced root, used as it is."""
    if mount_root is None:
        base, leaf, why = mount_point, False, "the configured cgroup root"
    else:
        base, leaf, why = _v2_base(mount_point, mount_root)
    available = set(_read(base, "cgroup.controllers").split()) if _is_v2(base) else set()
    missing = [c for c in V2_CONTROLLERS if c not in available]
    if missing:
        reasons.append(f"cgroup v2 at {base} ({why}) lacks controllers {','.join(missing)}")
        return None
    parent = os.path.join(base, parent_name)
    try:
        if leaf:
            _enter_leaf(base)
        enable = " ".join(f"+{c}" for c in V2_CONTROLLERS)
        _write(base, "cgroup.subtree_control", enable)
        os.makedirs(parent, exist_ok=True)
        _write(parent, "cgroup.subtree_control", enable)
        _probe(CgroupSetup(version=2, parents={UNIFIED: parent}))
    except OSError as e:
        reasons.append(
            f"cgroup v2 at {base} ({why}) is not writable ({e.strerror or e}{_owner_hint(base)})"
        )
        return None
    placement = f"cgroup v2: worker cgroups under {parent} ({why})"
    if leaf:
        placement += f"; this process moved into {os.path.join(base, DAEMON_LEAF)}"
    return CgroupSetup(version=2, parents={UNIFIED: parent}, placement=placement)


def _v2_base(mount_point: str, mount_root: str) -> tuple[str, bool, str]:
    """(the cgroup to put the parent in, whether this process must first move into its leaf,
    why that cgroup). The delegated one if this process has one, else the top."""
    own = _own_v2_cgroup()
    # "/.." and below: this process's cgroup is outside what the mount shows
    if (
        own is not None
        and not own.startswith("/..")
        and (mount_root == "/" or own == mount_root or own.startswith(mount_root + "/"))
    ):
        own_dir = os.path.normpath(mount_point + own[len(mount_root.rstrip("/")) :])
        if os.path.basename(own_dir) == DAEMON_LEAF and own_dir != mount_point:
            why = _delegated(os.path.dirname(own_dir), mount_point)
            if why:  # this process moved there before (an earlier pool)
                return os.path.dirname(own_dir), False, why
        why = _delegated(own_dir, mount_point)
        if why:
            return own_dir, True, why
    return mount_point, False, "the top of the hierarchy"


def _own_v2_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def _delegated(path: str, mount_point: str) -> str:
    """Why `path` (this process's cgroup) is this process's to divide up, or "" if it is not."""
    if path == mount_point:
        if not os.path.exists(os.path.join(path, "cgroup.type")):
            return ""  # the real root: no delegation, and processes may stay in it
        return "this container's own cgroup, the root of its cgroup namespace"
    for name in DELEGATE_XATTRS:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name) == b"1":
                return f"delegated by systemd (Delegate=yes, {name})"
    euid = os.geteuid()
    with contextlib.suppress(OSError):
        owners = {
            os.stat(os.path.join(path, f)).st_uid
            for f in ("", "cgroup.procs", "cgroup.subtree_control")
        }
        if euid != 0 and owners == {euid}:
            return f"delegated to uid {euid}"
    return ""


def _enter_leaf(base: str) -> None:
    """Move every process of `base` (this one among them) into base/DAEMON_LEAF."""
    leaf = os.path.join(base, DAEMON_LEAF)
    os.makedirs(leaf, exist_ok=True)
    for pid in _read(base, "cgroup.procs").split():
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            _write(leaf, "cgroup.procs", pid)


def _owner_hint(path: str) -> str:
    try:
        owner = os.stat(os.path.join(path, "cgroup.procs")).st_uid
    except OSError:
        return ""
    euid = os.geteuid()
    if owner == euid:
        return ""
    return f"; its files belong to uid {owner}, this process runs as uid {euid}"


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
    where = ", ".join(sorted(parents.values()))
    return CgroupSetup(
        version=1, parents=parents, placement=f"cgroup v1: worker cgroups under {where}"
    )


def _probe(setup: CgroupSetup) -> None:
    cg = setup.worker(f"{PROBE_PREFIX}{os.getpid()}")
    cg.create()
    try:
        cg.set_limits(64 * 1024 * 1024, 16)
    finally:
        cg.remove()


class _CloneArgs(ctypes.Structure):
    """struct clone_args (linux/sched.h), up to `cgroup` (CLONE_ARGS_SIZE_VER2)."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",
            "stack",
            "stack_size",
            "tls",
            "set_tid",
            "set_tid_size",
            "cgroup",
        )
    ]


def clone_into(flags: int, cgroup_dir: int) -> int:
    """namespaces.clone_into_namespaces(flags), but the child is created inside the v2 cgroup
    whose directory `cgroup_dir` is open (clone3 with CLONE_INTO_CGROUP, Linux >= 5.7): it never
    runs anywhere else, and nothing migrates it, so the cgroup.procs write (and the global lock
    every migration takes) is not needed. Returns 0 in the child, the child's pid in the parent.
    Only safe in a single-threaded process."""
    # With CLONE_PARENT the child's exit signal is the caller's own, and clone3 refuses another.
    exit_signal = 0 if flags & CLONE_PARENT else signal.SIGCHLD
    args = _CloneArgs(flags=flags | CLONE_INTO_CGROUP, exit_signal=exit_signal, cgroup=cgroup_dir)
    return fork_with("clone3", SYS_clone3, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))


def enter_self(entry_fds: tuple[int, ...]) -> None:
    """Move the calling single-threaded process into the cgroup opened by open_for_entry."""
    for fd in entry_fds:
        os.write(fd, b"0")
        os.close(fd)
