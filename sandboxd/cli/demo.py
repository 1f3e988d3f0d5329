"""`sandboxd demo`: start a warm pool, run a Python and a JavaScript hello."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .parser import Subparsers

if TYPE_CHECKING:
    from sandboxd_pool.types import Outcome

# (label, sandboxd_pool.Runtime member name, code): the engine is imported by _demo only.
_DEMO_PROGRAMS: tuple[tuple[str, str, str], ...] = (
    (
        "Python",
        "PYTHON",
        "import platform, socket\n"
        "print(f'hello from Python {platform.python_version()} on {socket.gethostname()}')\n",
    ),
    (
        "JavaScript",
        "JAVASCRIPT",
        "const os = require('os');\n"
        "console.log(`hello from Node ${process.version} on ${os.hostname()}`);\n",
    ),
)


def _text(data: bytes) -> str:
    return data.decode(errors="replace").rstrip()


def _print_outcome(label: str, outcome: Outcome) -> None:
    usage = outcome.usage
    print(f"== {label} ==")
    if outcome.signal is not None:
        print(f"verdict: {outcome.verdict.value} (signal {outcome.signal})")
    elif outcome.exit_code is not None:
        print(f"verdict: {outcome.verdict.value} (exit {outcome.exit_code})")
    else:
        print(f"verdict: {outcome.verdict.value}")
    print(f"stdout:  {_text(outcome.stdout)}")
    if outcome.stderr:
        print(f"stderr:  {_text(outcome.stderr)}")
    if outcome.blocked_syscall:
        print(f"blocked: {outcome.blocked_syscall}")
    print(
        f"usage:   wall {usage.wall_time_us / 1000:.1f} ms, cpu {usage.cpu_time_us / 1000:.1f} ms, "
        f"peak memory {usage.peak_memory_bytes / (1024 * 1024):.1f} MiB; "
        f"queue wait {outcome.queue_wait_us / 1000:.1f} ms"
        + (", cold start" if outcome.cold_start else "")
    )


def _demo(_args: argparse.Namespace) -> int:
    """Run one hello per runtime in a fresh pool; exit 0 only if both verdicts are OK."""
    from sandboxd_pool import ExecutionRequest, Pool, Runtime
    from sandboxd_pool.errors import SandboxError
    from sandboxd_pool.types import Verdict

    all_ok = True
    try:
        with Pool() as pool:
            for label, runtime_name, code in _DEMO_PROGRAMS:
                request = ExecutionRequest(runtime=Runtime[runtime_name], code=code)
                outcome = pool.execute(request)
                _print_outcome(label, outcome)
                all_ok = all_ok and outcome.verdict is Verdict.OK
    except SandboxError as exc:
        print(f"sandboxd demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0 if all_ok else 1


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo",
        help="start a pool and run a Python and a JavaScript hello",
        description="Start a warm pool, run one Python and one JavaScript hello in it, and "
        "print each verdict, stdout and resource usage. Exits non-zero unless both are OK.",
    )
    parser.set_defaults(handler=_demo)
