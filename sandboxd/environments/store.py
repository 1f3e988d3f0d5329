"""The store: built environments in read-only, content-addressed directories.

    STORE/python-<id>/           one Python build
        site/                    `pip install --target`: mounted at /opt/environment
        site/.sandboxd-cache/    what the packages would otherwise build inside the jail
                                 (matplotlib's font list)
        requirements.txt         the declared packages
        requirements.lock        what pip installed: name==version --hash=sha256:...
        pip-report.json          pip's installation report
        build.json               this record (written last: a build without it is not one)
    STORE/javascript-<id>/       one JavaScript build
        node_modules/            mounted at /node_modules
        package.json, package-lock.json
        build.json

`<id>` is a hash of the runtime, the packages (sorted, as written) and the interpreter's ABI
(toolchain.py): the same declaration under the same interpreter is the same build, whatever
the environment is called, and building it again reuses it. The preload list and the warm
workers are not part of it (they change what a worker loads, not what is installed).
Everything in a build is made read-only (no write bit) once it is complete."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from sandboxd_pool.config import Environment
from sandboxd_pool.types import Runtime

from .declaration import Declaration, load_declarations
from .toolchain import Toolchain

FORMAT = "sandboxd-environment-1"
DEFAULT_STORE = "/var/lib/sandboxd/environments"
RECORD = "build.json"
PYTHON_SITE = "site"
CACHE_DIR = ".sandboxd-cache"  # inside the mounted directory, so the jail sees it


def build_id(runtime: Runtime, packages: tuple[str, ...], abi: str) -> str:
    """The content address of a build (32 hex digits)."""
    identity = {
        "format": FORMAT,
        "runtime": runtime.value,
        "packages": sorted(set(packages)),
        "abi": abi,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Build:
    """A complete build, as its build.json records it."""

    directory: str
    id: str
    runtime: Runtime
    packages: tuple[str, ...]  # as declared
    abi: str
    lock: tuple[str, ...]  # what got installed: "name==version" (pip) or "name@version" (npm)
    size_bytes: int
    built_at: str  # ISO 8601, UTC
    tool: str  # "pip 23.2.1", "npm 11.1.0"

    @property
    def packages_path(self) -> str:
        """What the engine mounts: pip's --target directory, or the directory holding
        node_modules."""
        if self.runtime is Runtime.PYTHON:
            return os.path.join(self.directory, PYTHON_SITE)
        return self.directory

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "id": self.id,
                "runtime": self.runtime.value,
                "packages": list(self.packages),
                "abi": self.abi,
                "lock": list(self.lock),
                "size_bytes": self.size_bytes,
                "built_at": self.built_at,
                "tool": self.tool,
            },
            indent=2,
        )


class Store:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def directory(self, runtime: Runtime, id_: str) -> str:
        return os.path.join(self.root, f"{runtime.value}-{id_}")

    def find(self, declaration: Declaration, abi: str) -> Build | None:
        """The complete build of `declaration` for `abi`, or None."""
        id_ = build_id(declaration.runtime, declaration.packages, abi)
        return self.read(self.directory(declaration.runtime, id_))

    def read(self, directory: str) -> Build | None:
        try:
            with open(os.path.join(directory, RECORD), encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            return None
        try:
            return Build(
                directory=directory,
                id=str(raw["id"]),
                runtime=Runtime(raw["runtime"]),
                packages=tuple(raw["packages"]),
                abi=str(raw["abi"]),
                lock=tuple(raw["lock"]),
                size_bytes=int(raw["size_bytes"]),
                built_at=str(raw["built_at"]),
                tool=str(raw["tool"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def builds(self) -> list[Build]:
        """Every complete build in the store, by directory name."""
        try:
            names = sorted(os.listdir(self.root))
        except OSError:
            return []
        found = (self.read(os.path.join(self.root, n)) for n in names if not n.startswith("."))
        return [b for b in found if b is not None]


class NotBuilt(Exception):
    """Configured environments that have no complete build in the store."""

    def __init__(self, names: list[str], store: str, environments_file: str) -> None:
        self.names = names
        super().__init__(
            f"environment{'s' if len(names) > 1 else ''} {', '.join(names)} "
            f"{'are' if len(names) > 1 else 'is'} not built in {store}: run `sandboxd "
            f"environments build --environments {environments_file} --environments-store "
            f"{store}`"
        )


def engine_environments(
    declarations: dict[str, Declaration],
    store: Store,
    abis: dict[Runtime, str],
    environments_file: str,
) -> tuple[Environment, ...]:
    """PoolConfig.environments for the declarations; NotBuilt names those missing."""
    missing: list[str] = []
    environments: list[Environment] = []
    for declaration in declarations.values():
        build = store.find(declaration, abis[declaration.runtime])
        if build is None:
            missing.append(declaration.name)
            continue
        environments.append(
            Environment(
                name=declaration.name,
                runtime=declaration.runtime,
                path=build.packages_path,
                preload=declaration.preload,
                warm_workers=declaration.warm_workers,
            )
        )
    if missing:
        raise NotBuilt(missing, store.root, environments_file)
    return tuple(environments)


def configured(
    environments_file: str, store_root: str, toolchain: Toolchain
) -> tuple[Environment, ...]:
    """The daemon's PoolConfig.environments: every environment of the file, each from its
    build for the workers' interpreters; NotBuilt names those without one."""
    declarations = load_declarations(environments_file)
    abis = {rt: toolchain.abi(rt) for rt in {d.runtime for d in declarations.values()}}
    return engine_environments(declarations, Store(store_root), abis, environments_file)
