"""What a worker's jail is made of: frozen plans, built by the pool and carried to the zygote as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from . import signals

SANDBOX_UID = 1000  # the uid and gid inside every worker's user namespace
SANDBOX_HOSTNAME = "sandbox"
WORK_DIR = "/work"
OUT_DIR = "out"  # in WORK_DIR: what the program leaves here comes back (files_out.py)
OUT_MAX_DEPTH = 32  # folders deeper than this in out/ are not read
# Names under out/ looked at, at most (files, folders and anything else): twice the ceiling of
# max_output_files. The pool reads no more (files_out.py), nor does the init open up more in
# subuid mode (open_out.py): a program can leave far more, as many as its memory holds.
OUT_MAX_ENTRIES = 20_000
BOOT_MOUNT = "/opt/sandboxd"  # the in-worker bootstraps
JAIL_LIB_MOUNT = "/opt/sandboxd-lib"  # holds jail/ (this package), for the Python template
PYTHON_MOUNT = "/opt/python"  # an interpreter prefix of its own (pyenv, /opt/python3.x)
NODE_MOUNT = "/opt/node/bin"  # the directory of a node binary outside /usr
ENVIRONMENT_MOUNT = "/opt/environment"  # a Python environment's packages (on sys.path)
NODE_MODULES_MOUNT = "/node_modules"  # a JavaScript environment's node_modules


@dataclass(frozen=True)
class Bind:
    """A read-only layer of the jail: the host path `path`, seen at `target` inside (the same
    path when empty). A directory becomes an overlay of its own in each worker (mounts.py)."""

    path: str
    is_dir: bool = True
    target: str = ""
    # ELF files under `path` (relative) whose absolute RUNPATH is rewritten relative to $ORIGIN
    # in the jail's copy (jail/elf_runpath.py): the interpreter of a relocated prefix.
    relocate_runpath: tuple[str, ...] = ()
    # Files (relative path, text) that the jail's copy shows instead of the host's: the trust
    # bundle with the pool's egress CA (egress/trust.py).
    files: tuple[tuple[str, str], ...] = ()

    @property
    def jail_path(self) -> str:
        return self.target or self.path


@dataclass(frozen=True)
class RlimitPlan:
    nofile: int = 1024
    stack_bytes: int = 8 * 1024 * 1024
    fsize_bytes: int = 1024 * 1024 * 1024
    nproc: int = 1024
    data_bytes: int = 0  # 0: unlimited. Set only when no memory cgroup is available.
    sigpending: int = 1024  # queued signals (RLIMIT_SIGPENDING)
    msgqueue_bytes: int = 819_200  # POSIX message queues (RLIMIT_MSGQUEUE; the kernel default)


@dataclass(frozen=True)
class RuntimePlan:
    """How to start one runtime inside the jail."""

    name: str  # "python" | "javascript"
    argv: tuple[str, ...]
    binds: tuple[Bind, ...]
    masked_dirs: tuple[str, ...] = ()  # empty read-only tmpfs over these (e.g. site-packages)
    env: Mapping[str, str] = field(default_factory=dict)
    binary: str = ""  # the interpreter on the host (argv[0] is where the jail has it)

    def exec(self, argv: list[str]) -> None:
        """execve the runtime with the signal state a login shell gives (signals.py); an error
        names the host's binary, not only the jail's path."""
        signals.reset_for_exec()
        try:
            os.execve(argv[0], argv, dict(self.env))
        except OSError as e:
            where = f" ({argv[0]} in the jail)" if self.binary and self.binary != argv[0] else ""
            raise OSError(
                e.errno, f"cannot run {self.binary or argv[0]}{where}: {e.strerror}"
            ) from None


@dataclass(frozen=True)
class EnvironmentPlan:
    """A built environment (PoolConfig.environments), as the zygote needs it."""

    runtime: str
    path: str  # host directory
    preload: tuple[str, ...] = ()


@dataclass(frozen=True)
class JailPlan:
    runtimes: Mapping[str, RuntimePlan]
    common_binds: tuple[Bind, ...]
    symlinks: Mapping[str, str]  # path in the jail -> target (e.g. /lib -> usr/lib)
    boot_dir: str  # host dir holding the in-worker bootstraps, bound read-only at /opt/sandboxd
    jail_dir: str  # host dir of this package (jail/), bound read-only for the Python template
    python_template: bool  # Python workers fork from a warm template instead of exec
    etc_files: Mapping[str, str]
    scratch_bytes: int  # size of the tmpfs behind /work, /tmp and /dev/shm at boot
    rlimits: RlimitPlan
    uid_base: int  # outside uid of slot 0: PoolConfig.uid_base (root), the subuid start (subuid)
    uid_slots: int
    cgroup_parent: Mapping[str, str]  # controller (or "unified") -> path of the parent cgroup
    cgroup_version: int  # 1, 2, or 0 when no cgroup is writable (rlimit fallback)
    boot_memory_bytes: int  # memory limit of a warm worker before its request arrives
    boot_pids: int
    jail_mode: str = "root"  # "root" | "subuid" (jail/mode.py)
    gid_base: int = -1  # outside gid of worker slot 0; -1: the same as uid_base
    template_max_forks: int = 250  # PoolConfig.template_max_forks
    template_max_age_s: float = 300.0  # PoolConfig.template_max_age_s
    environments: Mapping[str, EnvironmentPlan] = field(default_factory=dict)
    # Each worker brings its `lo` up and opens the egress proxy's socket (jail/network.py).
    egress_proxy: bool = False

    @property
    def subuid(self) -> bool:
        return self.jail_mode == "subuid"

    def outside_ids(self, slot: int) -> tuple[int, int]:
        """The host uid and gid that the sandbox user of worker `slot` maps to."""
        gid_base = self.uid_base if self.gid_base < 0 else self.gid_base
        return self.uid_base + slot, gid_base + slot

    def layers(self, runtime: str, environment: str = "") -> tuple[Bind, ...]:
        """Every read-only layer of a `runtime` worker's root, in a fixed order (an index names
        a layer between the Python template and its children); with an `environment`, its
        packages too (Python at ENVIRONMENT_MOUNT, JavaScript's node_modules at /node_modules)."""
        env: tuple[Bind, ...] = ()
        if environment:
            path = self.environments[environment].path
            if runtime == "javascript":
                env = (Bind(f"{path}/node_modules", target=NODE_MODULES_MOUNT),)
            else:
                env = (Bind(path, target=ENVIRONMENT_MOUNT),)
        return (
            *self.common_binds,
            *self.runtimes[runtime].binds,
            Bind(self.boot_dir, target=BOOT_MOUNT),
            Bind(self.jail_dir, target=JAIL_LIB_MOUNT + "/jail"),
            *env,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> JailPlan:
        raw = json.loads(text)
        runtimes = {
            name: RuntimePlan(
                name=r["name"],
                argv=tuple(r["argv"]),
                binds=tuple(_bind(b) for b in r["binds"]),
                masked_dirs=tuple(r["masked_dirs"]),
                env=r["env"],
                binary=r["binary"],
            )
            for name, r in raw["runtimes"].items()
        }
        return JailPlan(
            runtimes=runtimes,
            common_binds=tuple(_bind(b) for b in raw["common_binds"]),
            symlinks=raw["symlinks"],
            boot_dir=raw["boot_dir"],
            jail_dir=raw["jail_dir"],
            python_template=raw["python_template"],
            etc_files=raw["etc_files"],
            scratch_bytes=raw["scratch_bytes"],
            rlimits=RlimitPlan(**raw["rlimits"]),
            uid_base=raw["uid_base"],
            uid_slots=raw["uid_slots"],
            cgroup_parent=raw["cgroup_parent"],
            cgroup_version=raw["cgroup_version"],
            boot_memory_bytes=raw["boot_memory_bytes"],
            boot_pids=raw["boot_pids"],
            jail_mode=raw["jail_mode"],
            gid_base=raw["gid_base"],
            template_max_forks=raw["template_max_forks"],
            template_max_age_s=raw["template_max_age_s"],
            environments={
                name: EnvironmentPlan(
                    runtime=e["runtime"], path=e["path"], preload=tuple(e["preload"])
                )
                for name, e in raw["environments"].items()
            },
            egress_proxy=raw["egress_proxy"],
        )


def _bind(raw: Mapping[str, object]) -> Bind:
    fields = dict(raw)
    fields["relocate_runpath"] = tuple(fields.get("relocate_runpath", ()))  # type: ignore[arg-type]
    fields["files"] = tuple((str(p), str(t)) for p, t in fields.get("files", ()))  # type: ignore[attr-defined]
    return Bind(**fields)  # type: ignore[arg-type]
