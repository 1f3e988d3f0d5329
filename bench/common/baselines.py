"""What people build instead of a warm pool: a fresh process per request.

- bare:    the interpreter alone, no isolation at all (the floor for spawning)
- bwrap:   bubblewrap with every namespace unshared and a minimal read-only root
- unshare: util-linux unshare with user, PID, mount, net, IPC and UTS namespaces

Every spawn gets the clean environment from `runtimes.clean_env()`, stdin from
/dev/null, and its stdout captured and checked against the hello output.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from bench.common.runtimes import BenchRuntime, clean_env
from bench.common.stats import Attempt

SPAWN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Baseline:
    name: str  # short key: "bare", "bwrap", "unshare"
    title: str  # for tables
    tool: str | None  # executable that must exist, None for bare

    def argv(self, runtime: BenchRuntime, program: list[str]) -> list[str]:
        if self.name == "bare":
            return list(program)
        if self.name == "bwrap":
            return [*bwrap_prefix(runtime), *program]
        if self.name == "unshare":
            return [*UNSHARE_PREFIX, *program]
        raise ValueError(self.name)

    def missing(self) -> str:
        """Why this baseline cannot run here, or "" when it can."""
        if self.tool and shutil.which(self.tool) is None:
            return f"{self.tool} not installed"
        return ""


BASELINES = (
    Baseline("bare", "bare spawn (no isolation)", None),
    Baseline("bwrap", "bwrap per request", "bwrap"),
    Baseline("unshare", "unshare per request", "unshare"),
)

UNSHARE_PREFIX = (
    "unshare",
    "--user",
    "--map-root-user",
    "--pid",
    "--fork",
    "--mount",
    "--net",
    "--ipc",
    "--uts",
)


def bwrap_prefix(runtime: BenchRuntime) -> list[str]:
    """bwrap with the brief's minimal root; the runtime's prefix is bound when outside /usr."""
    argv = [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    if runtime.prefix != "/usr" and not runtime.prefix.startswith("/usr/"):
        argv += ["--ro-bind", runtime.prefix, runtime.prefix]
    argv += [
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/bin",
        "/bin",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    return argv


def spawn_runner(argv: list[str], expected_stdout: bytes) -> Callable[[], Attempt]:
    """A callable that spawns `argv` once and says whether it printed the expected output."""
    env = clean_env()

    def run_once() -> Attempt:
        try:
            done = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=SPAWN_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")
        if done.returncode != 0 or done.stdout != expected_stdout:
            detail = (done.stderr or done.stdout).decode(errors="replace").strip()
            first = detail.splitlines()[-1] if detail else ""
            return Attempt(ok=False, error=f"exit {done.returncode}: {first}"[:200])
        return Attempt(ok=True)

    return run_once
