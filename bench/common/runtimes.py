"""The two runtimes as the benchmark sees them: interpreter, hello program, clean environment.

Baselines start interpreters the way the pool's workers do, to be fair: an empty
environment plus PATH (the host's NODE_EXTRA_CA_CERTS costs ~40 ms per Node start) and
`python -I -S` (a .pth file in site-packages costs ~25 ms per Python start). The pyenv
`python3` is a shell shim, so the real binary is used.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
RUNTIME_NAMES = ("python", "javascript")


def clean_env() -> dict[str, str]:
    return {"PATH": CLEAN_PATH}


@dataclass(frozen=True)
class BenchRuntime:
    name: str  # "python" or "javascript"; also the value of sandboxd_pool.Runtime
    interpreter: str  # absolute path of the real binary
    prefix: str  # installation root that must be visible inside a jail
    flags: tuple[str, ...]  # always passed before the code
    hello_code: str
    idle_code: str  # blocks reading stdin: a bare idle interpreter for PSS
    expected_stdout: bytes = b"hello\n"

    def code_argv(self, code: str) -> list[str]:
        return [self.interpreter, *self.flags, *self.code_flag(), code]

    def code_flag(self) -> tuple[str, ...]:
        return ("-c",) if self.name == "python" else ("-e",)

    @property
    def hello_argv(self) -> list[str]:
        return self.code_argv(self.hello_code)

    @property
    def idle_argv(self) -> list[str]:
        return self.code_argv(self.idle_code)


def _python_interpreter(explicit: str | None) -> str:
    if explicit:
        return os.path.realpath(explicit)
    # sys.executable is the real binary even when started through the pyenv shim.
    return os.path.realpath(sys.executable)


def _node_interpreter(explicit: str | None) -> str:
    found = explicit or shutil.which("node", path=CLEAN_PATH) or shutil.which("node")
    if not found:
        raise FileNotFoundError("node not found on PATH")
    return os.path.realpath(found)


def _install_prefix(interpreter: str) -> str:
    """The directory above bin/, e.g. /root/.pyenv/versions/3.11.7 or /usr."""
    return str(Path(interpreter).parent.parent)


def python_runtime(interpreter: str | None = None) -> BenchRuntime:
    path = _python_interpreter(interpreter)
    return BenchRuntime(
        name="python",
        interpreter=path,
        prefix=_install_prefix(path),
        flags=("-I", "-S"),
        hello_code="print('hello')",
        idle_code="import sys; sys.stdin.read()",
    )


def node_runtime(interpreter: str | None = None) -> BenchRuntime:
    path = _node_interpreter(interpreter)
    return BenchRuntime(
        name="javascript",
        interpreter=path,
        prefix=_install_prefix(path),
        flags=(),
        hello_code="console.log('hello')",
        idle_code="process.stdin.resume()",
    )


def select_runtimes(
    names: list[str], python: str | None = None, node: str | None = None
) -> list[BenchRuntime]:
    chosen = []
    for name in names:
        if name == "python":
            chosen.append(python_runtime(python))
        elif name in ("javascript", "node", "js"):
            chosen.append(node_runtime(node))
        else:
            raise ValueError(f"unknown runtime {name!r} (choose from {', '.join(RUNTIME_NAMES)})")
    return chosen
