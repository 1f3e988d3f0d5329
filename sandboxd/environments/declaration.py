"""Reading the environments file: `[environments.NAME]` tables, parsed with `tomllib` and
validated completely (an unknown key, a wrong type, a bad name is an `EnvironmentsFileError`
naming the file, the environment and the key)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from sandboxd_pool.config import ENVIRONMENT_NAME
from sandboxd_pool.types import Runtime

MAX_WARM_WORKERS = 256
MAX_PACKAGES = 1000
# A pip requirement specifier or an npm package spec, given to pip or npm as one argument (no
# shell): never an option ("-e", "--index-url ..."), no line break, NUL or comment.
PACKAGE_SPEC = re.compile(r"[A-Za-z0-9@_.][^\n\r\x00#]*")
# A preload entry: a Python module path (numpy, matplotlib.pyplot) or an npm package name
# (lodash, @scope/name, date-fns/format).
PYTHON_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
NPM_NAME = re.compile(r"(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*(/[A-Za-z0-9._~-]+)*")
_KEYS = frozenset({"runtime", "packages", "preload", "warm_workers"})
DEFAULT_WARM_WORKERS = 1


class EnvironmentsFileError(ValueError):
    """The environments file is invalid; the message says where and why."""

    def __init__(self, path: str, message: str, *, environment: str | None = None) -> None:
        where = f"{path}: " + (f"environment {environment!r}: " if environment else "")
        super().__init__(where + message)
        self.path = path
        self.environment = environment


@dataclass(frozen=True)
class Declaration:
    """One `[environments.NAME]` table: what the operator asked for."""

    name: str
    runtime: Runtime
    packages: tuple[str, ...]  # pip requirement specifiers or npm package specs, as written
    preload: tuple[str, ...] = ()  # modules imported (Python) or packages required (Node)
    warm_workers: int = DEFAULT_WARM_WORKERS  # 0: every execution is a cold start


def load_declarations(path: str | os.PathLike[str]) -> dict[str, Declaration]:
    """Every environment of the file, by name, in the file's order."""
    label = os.fspath(path)
    try:
        with open(label, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise EnvironmentsFileError(label, "no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise EnvironmentsFileError(label, f"not valid TOML: {e}") from None
    except OSError as e:
        raise EnvironmentsFileError(label, f"cannot read: {e.strerror or e}") from None
    unknown = sorted(set(document) - {"environments"})
    if unknown:
        raise EnvironmentsFileError(
            label,
            f"unknown top-level key {unknown[0]!r} (only [environments.NAME] tables belong here)",
        )
    tables = document.get("environments", {})
    if not isinstance(tables, dict):
        raise EnvironmentsFileError(label, "'environments' must be a table of tables")
    return {name: _declaration(label, name, raw) for name, raw in tables.items()}


def _declaration(label: str, name: str, raw: Any) -> Declaration:
    def error(message: str) -> EnvironmentsFileError:
        return EnvironmentsFileError(label, message, environment=name)

    if not ENVIRONMENT_NAME.fullmatch(name):
        raise EnvironmentsFileError(
            label,
            f"invalid environment name {name!r}: use 1-63 lowercase letters, digits, '_' or "
            "'-', starting with a letter or digit",
        )
    if not isinstance(raw, dict):
        raise error(f"[environments.{name}] must be a table")
    for key in raw:
        if key not in _KEYS:
            raise error(f"unknown key {key!r} (known: {', '.join(sorted(_KEYS))})")
    runtime_name = raw.get("runtime")
    try:
        runtime = Runtime(runtime_name)
    except ValueError:
        raise error(f'runtime must be "python" or "javascript", got {runtime_name!r}') from None
    packages = _strings(raw, "packages", error)
    if not packages:
        raise error("packages must list at least one package")
    if len(packages) > MAX_PACKAGES:
        raise error(f"packages: more than {MAX_PACKAGES}")
    for spec in packages:
        if not PACKAGE_SPEC.fullmatch(spec) or spec.startswith("-"):
            raise error(
                f"packages: {spec!r} is not one "
                + ("pip requirement specifier" if runtime is Runtime.PYTHON else "npm package spec")
                + " (not an option, no comment or line break)"
            )
    if len(set(packages)) != len(packages):
        raise error("packages: a package is listed twice")
    preload = _strings(raw, "preload", error)
    pattern = PYTHON_MODULE if runtime is Runtime.PYTHON else NPM_NAME
    for entry in preload:
        if not pattern.fullmatch(entry):
            what = "a module name" if runtime is Runtime.PYTHON else "a package name"
            raise error(f"preload: {entry!r} is not {what}")
    warm = raw.get("warm_workers", DEFAULT_WARM_WORKERS)
    if isinstance(warm, bool) or not isinstance(warm, int) or not 0 <= warm <= MAX_WARM_WORKERS:
        raise error(f"warm_workers must be an integer from 0 to {MAX_WARM_WORKERS}, got {warm!r}")
    return Declaration(name, runtime, tuple(packages), tuple(preload), warm)


def _strings(raw: dict[str, Any], key: str, error: Any) -> list[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise error(f"{key} must be a list of strings")
    return [v.strip() for v in value]
