"""What a build is for: the interpreter the workers run, asked once for its identity.

A Python environment holds compiled extensions and bytecode for one interpreter ABI; a
JavaScript one may hold native addons for one Node ABI. The identity goes into a build's
content address (store.py), so a daemon started with another interpreter finds its
environments "not built" instead of loading packages made for another one."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from sandboxd_pool.config import PoolConfig
from sandboxd_pool.types import Runtime

TIMEOUT_S = 30.0
_PYTHON_ABI = (
    "import sys, sysconfig; print(sys.implementation.cache_tag, "
    "sysconfig.get_config_var('SOABI') or '', sysconfig.get_platform())"
)
_NODE_ABI = "console.log(`node-abi${process.versions.modules} ${process.platform}-${process.arch}`)"


class ToolchainError(RuntimeError):
    pass


@dataclass(frozen=True)
class Toolchain:
    """The interpreters a build is made with and for (the daemon's --python and --node)."""

    python_path: str
    node_path: str
    npm_path: str = ""  # "": `npm` on PATH, found when a JavaScript build needs it

    @staticmethod
    def of(python_path: str | None = None, node_path: str | None = None) -> Toolchain:
        """The daemon's defaults for what is not given (PoolConfig's: the real interpreter
        running this process, `node` on PATH)."""
        defaults = PoolConfig()
        return Toolchain(
            python_path=python_path or defaults.python_path,
            node_path=node_path or defaults.node_path,
        )

    def abi(self, runtime: Runtime) -> str:
        """One line naming the ABI the runtime's packages must match."""
        if runtime is Runtime.PYTHON:
            return _ask([self.python_path, "-I", "-c", _PYTHON_ABI])
        return _ask([self.node_path, "-e", _NODE_ABI])

    def npm(self) -> str:
        path = self.npm_path or shutil.which("npm")
        if not path:
            raise ToolchainError(
                "npm is not installed (needed to build JavaScript environments; Debian: "
                "apt-get install npm)"
            )
        return path


def _ask(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolchainError(f"cannot run {argv[0]}: {e}") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise ToolchainError(
            f"{argv[0]} did not say its ABI (exit {done.returncode}): {done.stderr.strip()[:500]}"
        )
    return " ".join(done.stdout.split())
