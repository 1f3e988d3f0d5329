"""PoolConfig: every knob of the engine, with its unit and default, and the jail plan built from it."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field

from .jail.cgroups import PARENT_NAME_PATTERN, CgroupSetup
from .jail.mode import MODES, JailMode
from .jail.policy import SANDBOX_UID, WORK_DIR, Bind, JailPlan, RlimitPlan, RuntimePlan
from .types import CEILING_LIMITS, DEFAULT_LIMITS, Limits, Runtime

BOOT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_in_worker")
JAIL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jail")
JAIL_BOOT_DIR = "/opt/sandboxd"
DEBIAN_NODE_BUILTINS = "/usr/share/nodejs"


def _real_python() -> str:
    """The interpreter binary itself: pyenv's `python3` is a shell shim that must not be exec'd."""
    base = getattr(sys, "_base_executable", sys.executable) or sys.executable
    return os.path.realpath(base)


def _default_node() -> str:
    return os.path.realpath(shutil.which("node") or "/usr/bin/node")


@dataclass(frozen=True)
class PoolConfig:
    warm_workers_per_runtime: int = 2
    max_concurrent_executions: int = 16  # executions running at once; further calls wait
    runtimes: tuple[Runtime, ...] = (Runtime.PYTHON, Runtime.JAVASCRIPT)
    default_limits: Limits = DEFAULT_LIMITS  # fills the zero fields of a request's limits
    ceiling_limits: Limits = CEILING_LIMITS  # a request above any of these is InvalidRequest
    python_path: str = field(default_factory=_real_python)
    node_path: str = field(default_factory=_default_node)
    cgroup_root: str | None = None  # None: detect (v2 if usable, else v1, else rlimit fallback)
    # The cgroup (one directory name, in each hierarchy) holding this pool's worker cgroups.
    # Pools sharing a name share its limits (an operator's pids.max on it, say); one name per
    # daemon gives each its own budget. Removed at close() when empty.
    cgroup_parent: str = "sandboxd"
    boot_timeout_ms: int = 10_000  # a worker not ready by then counts as a boot failure
    max_boot_failures: int = 3  # consecutive failures that mark a runtime unhealthy
    unhealthy_retry_ms: int = 5_000  # while unhealthy, one boot attempt per this interval
    max_code_bytes: int = 4 * 1024 * 1024
    max_stdin_bytes: int = 64 * 1024 * 1024
    max_files_bytes: int = 64 * 1024 * 1024  # sum of all request files
    max_files: int = 1000
    readonly_binds: tuple[str, ...] = ()  # extra host paths bound read-only (a package layer)
    # "auto": "root" when the engine holds CAP_SYS_ADMIN and CAP_SETUID in the initial user
    # namespace, else "subuid" (workers map to the daemon user's /etc/subuid and /etc/subgid
    # ranges through newuidmap/newgidmap). See jail/mode.py and README "The two jail modes".
    jail_mode: str = "auto"
    uid_base: int = 3_000_000  # root mode: outside uid (and gid) of worker slot n is uid_base + n
    cpu_cores_per_worker: float = 1.0  # cgroup CPU quota of one worker; 0: unlimited
    boot_memory_bytes: int = 512 * 1024 * 1024  # memory cap of a warm worker before its request
    # Python workers are forked from a warm, jailed `python -I -S` template (no interpreter
    # start per worker) rather than exec'd one by one. Node is always exec'd (V8 cannot fork).
    # Root mode only: in subuid mode Python workers are always exec'd (logged at start).
    python_template: bool = True

    def __post_init__(self) -> None:
        if self.warm_workers_per_runtime < 1:
            raise ValueError("warm_workers_per_runtime must be >= 1")
        if self.max_concurrent_executions < 1:
            raise ValueError("max_concurrent_executions must be >= 1")
        if not self.runtimes:
            raise ValueError("runtimes must name at least one runtime")
        if self.jail_mode not in MODES:
            raise ValueError(f"jail_mode must be one of {', '.join(MODES)}")
        if not PARENT_NAME_PATTERN.fullmatch(self.cgroup_parent):
            raise ValueError(
                "cgroup_parent must be one directory name: letters, digits, '_', '.', '-' "
                "(at most 64, not starting with '.' or '-'), not 'daemon' (the daemon's own "
                "cgroup in a delegated one)"
            )

    @property
    def worker_slots_needed(self) -> int:
        """Workers that can exist at once: the warm ones plus those running executions."""
        return len(self.runtimes) * self.warm_workers_per_runtime + self.max_concurrent_executions

    def limits_for(self, requested: Limits) -> Limits:
        return requested.merged_over(self.default_limits)


def _python_plan(config: PoolConfig) -> RuntimePlan:
    exe = config.python_path
    prefix = os.path.dirname(os.path.dirname(exe))
    binds: list[Bind] = []
    masked: list[str] = []
    # A prefix of its own (pyenv, /opt/python) is bound; a system interpreter's (/usr) already
    # is, and "/" (an interpreter in /bin, or a bogus path) must never be bound.
    if prefix not in ("/", "") and not prefix.startswith("/usr") and os.path.isdir(prefix):
        binds.append(Bind(prefix))
        lib = os.path.join(prefix, "lib")
        if os.path.isdir(lib):
            masked += [
                os.path.join(lib, d, "site-packages")
                for d in os.listdir(lib)
                if d.startswith("python") and os.path.isdir(os.path.join(lib, d, "site-packages"))
            ]
    return RuntimePlan(
        name=Runtime.PYTHON.value,
        argv=(exe, "-I", "-S", "-B", f"{JAIL_BOOT_DIR}/python_boot.py"),
        binds=tuple(binds),
        masked_dirs=tuple(masked),
        env={"PATH": "/usr/bin:/bin", "HOME": WORK_DIR, "LANG": "C.UTF-8", "PYTHONUTF8": "1"},
    )


def _node_plan(config: PoolConfig) -> RuntimePlan:
    exe = config.node_path
    binds = [] if exe.startswith("/usr/") else [Bind(exe, is_dir=False)]
    # Debian's own Node build loads some builtins (cjs-module-lexer, acorn, undici) from here at
    # start; without it every worker aborts ("Cannot load externalized builtin").
    if os.path.isdir(DEBIAN_NODE_BUILTINS):
        binds.append(Bind(DEBIAN_NODE_BUILTINS))
    return RuntimePlan(
        name=Runtime.JAVASCRIPT.value,
        argv=(exe, f"{JAIL_BOOT_DIR}/node_boot.js"),
        binds=tuple(binds),
        env={"PATH": "/usr/bin:/bin", "HOME": WORK_DIR, "LANG": "C.UTF-8"},
    )


_PASSWD = (
    f"root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}::{WORK_DIR}:/bin/sh\n"
)
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n"


def build_jail_plan(config: PoolConfig, cgroups: CgroupSetup, mode: JailMode) -> JailPlan:
    common = [Bind(p) for p in ("/usr/bin", "/usr/lib", "/usr/lib64", "/usr/share/zoneinfo")]
    common += [Bind(p) for p in ("/etc/ssl", "/etc/alternatives") if os.path.isdir(p)]
    common += [Bind(p, is_dir=os.path.isdir(p)) for p in config.readonly_binds]
    symlinks = {}
    for top in ("bin", "lib", "lib64", "sbin"):
        host = f"/{top}"
        if os.path.islink(host):
            symlinks[host] = os.readlink(host)
        elif os.path.isdir(host):
            common.append(Bind(host))
    runtimes = {}
    for runtime in config.runtimes:
        plan = _python_plan(config) if runtime is Runtime.PYTHON else _node_plan(config)
        runtimes[runtime.value] = plan
    fallback_memory = 0 if cgroups.version else config.ceiling_limits.memory_bytes
    return JailPlan(
        runtimes=runtimes,
        common_binds=tuple(common),
        symlinks=symlinks,
        boot_dir=BOOT_DIR,
        jail_dir=JAIL_DIR,
        python_template=config.python_template and mode.mode == "root",
        etc_files={
            "passwd": _PASSWD,
            "group": _GROUP,
            "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
            "hostname": "sandbox\n",
            "resolv.conf": "",
            "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
            "localtime": "symlink:/usr/share/zoneinfo/UTC",
        },
        scratch_bytes=config.ceiling_limits.tmpfs_bytes,
        rlimits=RlimitPlan(
            nproc=config.ceiling_limits.max_processes,
            fsize_bytes=config.ceiling_limits.tmpfs_bytes,
            data_bytes=fallback_memory,
        ),
        uid_base=mode.uid_base,
        uid_slots=mode.slots,
        cgroup_parent=dict(cgroups.parents),
        cgroup_version=cgroups.version,
        boot_memory_bytes=config.boot_memory_bytes,
        boot_pids=config.ceiling_limits.max_processes,
        jail_mode=mode.mode,
        gid_base=mode.gid_base,
    )
