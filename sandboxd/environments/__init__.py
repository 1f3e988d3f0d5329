"""Environments: third-party packages for one runtime, declared by the operator in a TOML file
(`--environments FILE`), built with pip or npm into a content-addressed store
(`sandboxd environments build`), and mounted read-only into the workers of that environment.

    [environments.data]
    runtime = "python"                              # "python" or "javascript"
    packages = ["numpy==2.2.6", "pandas==2.2.3"]    # pip requirement specifiers / npm specs
    preload = ["numpy", "pandas"]                   # imported (required) before any request
    warm_workers = 2                                # optional, default 1; 0: cold starts only

declaration.py reads the file, store.py knows where a build lives and which are complete,
build.py makes them, toolchain.py asks the interpreters which ABI a build is for."""

from .build import BuildError, build
from .declaration import Declaration, EnvironmentsFileError, load_declarations
from .store import DEFAULT_STORE, Build, NotBuilt, Store, configured, engine_environments
from .toolchain import Toolchain, ToolchainError

__all__ = [
    "DEFAULT_STORE",
    "Build",
    "BuildError",
    "Declaration",
    "EnvironmentsFileError",
    "NotBuilt",
    "Store",
    "Toolchain",
    "ToolchainError",
    "build",
    "configured",
    "engine_environments",
    "load_declarations",
]
