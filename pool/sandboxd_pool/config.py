"""PoolConfig: every knob of the engine, with its unit and default, and the jail plan built from it."""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field

from .egress.trust import JAIL_CA_BUNDLE, jail_bundle
from .jail.cgroups import PARENT_NAME_PATTERN, CgroupSetup
from .jail.elf_runpath import runpath
from .jail.mode import MAX_SLOTS, MODES, JailMode
from .jail.policy import (
    BOOT_MOUNT,
    NODE_MOUNT,
    PYTHON_MOUNT,
    SANDBOX_UID,
    WORK_DIR,
    Bind,
    EnvironmentPlan,
    JailPlan,
    RlimitPlan,
    RuntimePlan,
)
from .types import CEILING_LIMITS, DEFAULT_LIMITS, Limits, Runtime

BOOT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_in_worker")
JAIL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jail")
DEBIAN_NODE_BUILTINS = "/usr/share/nodejs"


def _real_python() -> str:
    """The interpreter binary itself: pyenv's `python3` is a shell shim that must not be exec'd."""
    base = getattr(sys, "_base_executable", sys.executable) or sys.executable
    return os.path.realpath(base)


def _default_node() -> str:
    return os.path.realpath(shutil.which("node") or "/usr/bin/node")


ENVIRONMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass(frozen=True)
class Environment:
    """Third-party packages for one runtime, built by the operator into a read-only directory
    (`sandboxd environments build`), and what a warm worker loads from them before any request.

    Python: `path` is a `pip install --target` directory, on sys.path after the standard
    library; `preload` are modules the environment's own template imports (its workers fork
    with them imported). JavaScript: `path` holds `node_modules` (`npm install --prefix`), seen
    at /node_modules so require() and import find it; `preload` are packages each worker
    requires while it warms."""

    name: str
    runtime: Runtime
    path: str
    preload: tuple[str, ...] = ()
    warm_workers: int = 1  # 0: no warm worker; each execution is a cold start

    def __post_init__(self) -> None:
        object.__setattr__(self, "preload", tuple(self.preload))
        if not ENVIRONMENT_NAME.fullmatch(self.name):
            raise ValueError(
                f"environment name {self.name!r}: lowercase letters, digits, '_' and '-', "
                "starting with a letter or digit, at most 63"
            )
        if self.warm_workers < 0:
            raise ValueError(f"environment {self.name}: warm_workers must be >= 0")


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
    # ranges through newuidmap/newgidmap). See jail/mode.py and docs/architecture.md "The two jail modes".
    jail_mode: str = "auto"
    uid_base: int = 3_000_000  # root mode: outside uid (and gid) of worker slot n is uid_base + n
    cpu_cores_per_worker: float = 1.0  # cgroup CPU quota of one worker; 0: unlimited
    boot_memory_bytes: int = 512 * 1024 * 1024  # memory cap of a warm worker before its request
    # Python workers are forked from a warm, jailed `python -I -S` template (no interpreter
    # start per worker) rather than exec'd one by one. Node is always exec'd (V8 cannot fork).
    # Root mode only: in subuid mode Python workers are always exec'd (logged at start).
    python_template: bool = True
    # A template's children share what it held when they were forked: the hash seed, the
    # stack-canary seed (AT_RANDOM), the address layout. It is replaced by a fresh one (started
    # in the background) after this many children or this many seconds, whichever comes first,
    # which bounds how many executions share them. Its start costs ~30 ms of CPU once.
    template_max_forks: int = 250
    template_max_age_s: float = 300.0
    environments: tuple[Environment, ...] = ()  # built package sets requests may name
    # Egress (docs/egress.md): every worker brings its loopback up and opens the proxy's
    # listening socket in its own network namespace (jail/network.py), which the pool serves
    # for a request with an egress policy (Pool.execute(egress=...)). False: workers keep a
    # down loopback and egress policies are refused.
    egress_proxy: bool = True
    # Names the proxy resolves from this file (hosts-file format) before DNS: tests,
    # air-gapped sites. "": none.
    egress_hosts_file: str = ""
    # PEM CA certificates the proxy trusts for the destinations' TLS, beside the system store.
    egress_ca_file: str = ""

    def __post_init__(self) -> None:
        if self.warm_workers_per_runtime < 1:
            raise ValueError("warm_workers_per_runtime must be >= 1")
        if self.max_concurrent_executions < 1:
            raise ValueError("max_concurrent_executions must be >= 1")
        if not self.runtimes:
            raise ValueError("runtimes must name at least one runtime")
        names = [e.name for e in self.environments]
        if len(set(names)) != len(names):
            raise ValueError(f"environments: a name appears twice ({', '.join(names)})")
        for environment in self.environments:
            if environment.runtime not in self.runtimes:
                raise ValueError(
                    f"environment {environment.name}: runtime {environment.runtime.value} is "
                    "not enabled"
                )
            if not os.path.isdir(environment.path):
                raise ValueError(
                    f"environment {environment.name}: {environment.path} is not a directory "
                    "(run `sandboxd environments build`)"
                )
        if self.template_max_forks < 1:
            raise ValueError("template_max_forks must be >= 1")
        if self.template_max_age_s <= 0:
            raise ValueError("template_max_age_s must be > 0")
        if self.worker_slots_needed > MAX_SLOTS:
            raise ValueError(
                f"warm_workers_per_runtime x runtimes + max_concurrent_executions = "
                f"{self.worker_slots_needed} workers at once, more than {MAX_SLOTS} worker slots"
            )
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
        warm = len(self.runtimes) * self.warm_workers_per_runtime
        warm += sum(e.warm_workers for e in self.environments)
        return warm + self.max_concurrent_executions

    def environment(self, name: str) -> Environment | None:
        return next((e for e in self.environments if e.name == name), None)

    def limits_for(self, requested: Limits) -> Limits:
        return requested.merged_over(self.default_limits)


def _python_plan(config: PoolConfig) -> RuntimePlan:
    exe = config.python_path
    prefix = os.path.dirname(os.path.dirname(exe))
    binds: list[Bind] = []
    masked: list[str] = []
    argv0 = exe
    # A prefix of its own (pyenv, /opt/python) is mounted at PYTHON_MOUNT, never at its host
    # path (which may name a home directory); a system interpreter's (/usr) already is, and "/"
    # (an interpreter in /bin, or a bogus path) must never be bound.
    if prefix not in ("/", "") and not prefix.startswith("/usr") and os.path.isdir(prefix):
        rel_exe = os.path.relpath(exe, prefix)
        relocate = (rel_exe,) if _has_runpath(exe) else ()
        binds.append(Bind(prefix, target=PYTHON_MOUNT, relocate_runpath=relocate))
        argv0 = f"{PYTHON_MOUNT}/{rel_exe}"
        lib = os.path.join(prefix, "lib")
        if os.path.isdir(lib):
            masked += [
                f"{PYTHON_MOUNT}/lib/{d}/site-packages"
                for d in os.listdir(lib)
                if d.startswith("python") and os.path.isdir(os.path.join(lib, d, "site-packages"))
            ]
    return RuntimePlan(
        name=Runtime.PYTHON.value,
        argv=(argv0, "-I", "-S", "-B", f"{BOOT_MOUNT}/python_boot.py"),
        binds=tuple(binds),
        masked_dirs=tuple(masked),
        env={"PATH": "/usr/bin:/bin", "HOME": WORK_DIR, "LANG": "C.UTF-8", "PYTHONUTF8": "1"},
        binary=exe,
    )


def _has_runpath(exe: str) -> bool:
    try:
        with open(exe, "rb") as f:
            return runpath(f.read()) is not None
    except (OSError, ValueError):
        return False


def _node_plan(config: PoolConfig) -> RuntimePlan:
    exe = config.node_path
    binds: list[Bind] = []
    argv0 = exe
    if not exe.startswith("/usr/"):  # its directory at NODE_MOUNT, not at its host path
        binds.append(Bind(os.path.dirname(exe), target=NODE_MOUNT))
        argv0 = f"{NODE_MOUNT}/{os.path.basename(exe)}"
    # Debian's own Node build loads some builtins (cjs-module-lexer, acorn, undici) from here at
    # start; without it every worker aborts ("Cannot load externalized builtin").
    if os.path.isdir(DEBIAN_NODE_BUILTINS):
        binds.append(Bind(DEBIAN_NODE_BUILTINS))
    return RuntimePlan(
        name=Runtime.JAVASCRIPT.value,
        argv=(argv0, f"{BOOT_MOUNT}/node_boot.js"),
        binds=tuple(binds),
        env={"PATH": "/usr/bin:/bin", "HOME": WORK_DIR, "LANG": "C.UTF-8"},
        binary=exe,
    )


_PASSWD = (
    f"root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:{SANDBOX_UID}:{SANDBOX_UID}::{WORK_DIR}:/bin/sh\n"
)
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n"


def build_jail_plan(
    config: PoolConfig, cgroups: CgroupSetup, mode: JailMode, egress_ca_pem: str = ""
) -> JailPlan:
    """The jail of this pool's workers; with `egress_ca_pem` (the pool's egress CA), its trust
    bundle holds that CA (egress/trust.py)."""
    common = [Bind(p) for p in ("/usr/bin", "/usr/lib", "/usr/lib64", "/usr/share/zoneinfo")]
    etc_files: dict[str, str] = {}
    bundle = jail_bundle(egress_ca_pem) if egress_ca_pem else ""
    if os.path.isdir("/etc/ssl"):
        in_layer = JAIL_CA_BUNDLE.removeprefix("/etc/ssl/")
        common.append(Bind("/etc/ssl", files=((in_layer, bundle),) if bundle else ()))
    elif bundle:
        etc_files[JAIL_CA_BUNDLE.removeprefix("/etc/")] = bundle
    common += [Bind(p) for p in ("/etc/alternatives",) if os.path.isdir(p)]
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
    environments = {
        e.name: EnvironmentPlan(runtime=e.runtime.value, path=e.path, preload=e.preload)
        for e in config.environments
    }
    return JailPlan(
        runtimes=runtimes,
        environments=environments,
        common_binds=tuple(common),
        symlinks=symlinks,
        boot_dir=BOOT_DIR,
        jail_dir=JAIL_DIR,
        python_template=config.python_template and mode.mode == "root",
        etc_files={
            **etc_files,
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
        template_max_forks=config.template_max_forks,
        template_max_age_s=config.template_max_age_s,
        egress_proxy=config.egress_proxy,
    )
