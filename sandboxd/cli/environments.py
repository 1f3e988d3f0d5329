"""`sandboxd environments build|list`: build the environments of an environments file into the
store, or show each with its status, size and lock (sandboxd.environments).

Run by the operator (or an image's RUN step), never by the daemon: the daemon only reads the
store, and refuses to start while an environment of its file has no build there. The flags
--environments, --environments-store, --python and --node are the daemon's own settings
(sandboxd/settings.py): a build is made with and for the interpreters the workers run."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from .. import settings
from .parser import Subparsers

if TYPE_CHECKING:
    from sandboxd.environments import Declaration
    from sandboxd_pool.types import Runtime

SHARED_SETTINGS = ("environments_file", "environments_store", "python_path", "node_path")
_EXIT_FAILED = 1
_EXIT_USAGE = 2


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "environments",
        help="build or list the environments (third-party packages) requests may name",
        description="Build the environments of an environments file with pip and npm into "
        "read-only, content-addressed directories of the store, or list them.",
    )
    sub = parser.add_subparsers(dest="environments_command", required=True, metavar="COMMAND")
    build = sub.add_parser(
        "build",
        help="build every environment of the file (or those named)",
        description="Install each environment's packages (pip install --target, npm install "
        "--prefix) with the workers' interpreters into the store, keeping the resolved lock "
        "beside them. An environment already built (the same runtime, packages and interpreter) "
        "is reused. Exits 1 if any build failed, naming the package and the tool's reason.",
    )
    build.add_argument("names", nargs="*", metavar="NAME", help="only these environments")
    settings.add_arguments(build, SHARED_SETTINGS)
    build.set_defaults(handler=_build)
    list_ = sub.add_parser(
        "list",
        help="show each environment: status, build, size and lock",
        description="One line per environment of the file (name, runtime, built or not, the "
        "build's directory, size and packages installed), then its lock, one package a line.",
    )
    settings.add_arguments(list_, SHARED_SETTINGS)
    list_.set_defaults(handler=_list)


def _setup(args: argparse.Namespace) -> tuple[settings.Settings, dict[str, Declaration]]:
    from sandboxd.environments import load_declarations

    config = settings.from_args(args, names=SHARED_SETTINGS)
    if config.environments_file is None:
        raise settings.SettingsError(
            ["no environments file: pass --environments FILE or set SANDBOXD_ENVIRONMENTS"]
        )
    return config, load_declarations(config.environments_file)


def _build(args: argparse.Namespace) -> int:
    from sandboxd.environments import (
        BuildError,
        Store,
        Toolchain,
        ToolchainError,
        build,
    )

    try:
        config, declarations = _setup(args)
    except settings.SettingsError as e:
        return _usage(e.problems)
    unknown = [n for n in args.names if n not in declarations]
    if unknown:
        known = ", ".join(declarations) or "none"
        return _usage([f"no environment {', '.join(unknown)} in the file (there are: {known})"])
    store = Store(config.environments_store)
    toolchain = Toolchain.of(config.python_path, config.node_path)
    failed = 0
    for name, declaration in declarations.items():
        if args.names and name not in args.names:
            continue
        started = time.monotonic()
        try:
            made, reused = build(
                declaration,
                store,
                toolchain,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )
        except (BuildError, ToolchainError, OSError) as e:
            print(f"sandboxd environments build: error: {e}", file=sys.stderr)
            failed += 1
            continue
        what = "already built" if reused else f"built in {time.monotonic() - started:.1f} s"
        print(
            f"{name}: {what}: {made.directory} ({_mib(made.size_bytes)}, "
            f"{len(made.lock)} packages)",
            flush=True,
        )
    return _EXIT_FAILED if failed else 0


def _list(args: argparse.Namespace) -> int:
    from sandboxd.environments import Store, Toolchain, ToolchainError

    try:
        config, declarations = _setup(args)
    except settings.SettingsError as e:
        return _usage(e.problems)
    store = Store(config.environments_store)
    toolchain = Toolchain.of(config.python_path, config.node_path)
    abis: dict[Runtime, str] = {}
    for name, declaration in declarations.items():
        runtime = declaration.runtime
        try:
            if runtime not in abis:
                abis[runtime] = toolchain.abi(runtime)
        except ToolchainError as e:
            print(f"{name}\t{runtime.value}\tunknown: {e}")
            continue
        made = store.find(declaration, abis[runtime])
        if made is None:
            print(f"{name}\t{runtime.value}\tnot built (sandboxd environments build {name})")
            continue
        print(
            f"{name}\t{runtime.value}\tbuilt\t{made.directory}\t{_mib(made.size_bytes)}\t"
            f"{len(made.lock)} packages\t{made.built_at}\t{made.tool}"
        )
        for line in made.lock:
            print(f"  {line}")
    return 0


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _usage(problems: list[str]) -> int:
    for problem in problems:
        print(f"sandboxd environments: error: {problem}", file=sys.stderr)
    return _EXIT_USAGE
