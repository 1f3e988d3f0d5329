"""The `sandboxd` command line.

sandboxd serve                  run the gRPC daemon (settings: `sandboxd serve --help`)
sandboxd run FILE               run a file on a daemon; exit with the program's exit code
sandboxd tenants add|list|remove  manage the tenants file
sandboxd health                 exit 0 only if a daemon's grpc.health.v1 says SERVING
sandboxd demo                   start a warm pool, run a Python and a JavaScript hello
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sandboxd import __version__

if TYPE_CHECKING:
    from sandboxd_pool.types import Outcome

# (label, sandboxd_pool.Runtime member name, code). The engine is imported only by the commands
# that use it, so `sandboxd --help` and `--version` work even where it cannot load.
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


_EXTENSIONS = {".py": "python", ".js": "javascript", ".cjs": "javascript", ".mjs": "javascript"}


def _serve(args: argparse.Namespace) -> int:
    from sandboxd import logs, preflight, server, settings
    from sandboxd.tenants import TenantsFileError
    from sandboxd_pool.errors import JailModeError

    try:
        config = settings.from_args(args)
    except settings.SettingsError as e:
        for problem in e.problems:
            print(f"sandboxd serve: error: {problem}", file=sys.stderr)
        return 2
    problems = preflight.check()
    if problems:
        print(preflight.message(problems), file=sys.stderr)
        return 2
    logs.configure(config.log_level)
    try:
        return server.serve(config)
    except settings.SettingsError as e:  # a value that failed once used (a port taken)
        for problem in e.problems:
            print(f"sandboxd serve: error: {problem}", file=sys.stderr)
        return 2
    except (TenantsFileError, JailModeError) as e:
        print(f"sandboxd serve: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"sandboxd serve: error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import os

    from sandboxd_client import Client, Limits, SandboxdError

    runtime = args.runtime or _EXTENSIONS.get(os.path.splitext(args.file)[1].lower())
    if runtime is None:
        print(
            f"sandboxd run: error: cannot tell the runtime of {args.file!r} from its extension; "
            "pass --runtime python or --runtime javascript",
            file=sys.stderr,
        )
        return 2
    try:
        with open(args.file, encoding="utf-8") as f:
            code = f.read()
        stdin = b""
        if args.stdin == "-":
            stdin = sys.stdin.buffer.read()
        elif args.stdin is not None:
            with open(args.stdin, "rb") as f:
                stdin = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"sandboxd run: error: {e}", file=sys.stderr)
        return 2
    limits = Limits(wall_time_ms=args.wall_time_ms or 0, memory_bytes=args.memory_bytes or 0)
    try:
        with Client(args.target, api_key=args.key or None) as client:
            result = client.execute(
                runtime, code, stdin=stdin, args=args.arg, limits=limits, timeout_s=args.timeout
            )
    except SandboxdError as e:
        print(f"sandboxd run: {e.code}: {e.message}", file=sys.stderr)
        for v in getattr(e, "violations", ()):
            print(
                f"  {getattr(v, 'field', getattr(v, 'subject', ''))}: {v.description}",
                file=sys.stderr,
            )
        return 2
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    if not result.ok:
        usage = result.usage
        detail = f" ({result.blocked_syscall})" if result.blocked_syscall else ""
        if result.signal is not None:
            detail += f" signal {result.signal}"
        print(
            f"sandboxd run: verdict {result.verdict.value}{detail}; wall "
            f"{usage.wall_time_us / 1000:.1f} ms, cpu {usage.cpu_time_us / 1000:.1f} ms, "
            f"peak memory {usage.peak_memory_bytes / (1024 * 1024):.1f} MiB"
            + ("; stdout truncated" if result.stdout_truncated else "")
            + ("; stderr truncated" if result.stderr_truncated else ""),
            file=sys.stderr,
        )
    if result.exit_code is not None:
        return result.exit_code
    if result.signal is not None:
        return 128 + result.signal
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    import os

    from sandboxd import settings
    from sandboxd.cli import health, seccomp_profile, tenants

    parser = argparse.ArgumentParser(
        prog="sandboxd",
        description="Run untrusted Python and JavaScript in warm, single-use, jailed workers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the gRPC daemon",
        description="Serve sandboxd.v1.Sandbox over gRPC, with grpc.health.v1, reflection and "
        "Prometheus metrics. Every flag has a SANDBOXD_* environment variable; a flag wins. "
        "SIGTERM drains: in-flight executions finish within --drain-grace, new calls get "
        "UNAVAILABLE.",
    )
    settings.add_arguments(serve)
    serve.set_defaults(handler=_serve)

    run = commands.add_parser(
        "run",
        help="run a file on a daemon",
        description="Run FILE on a sandboxd daemon, print its stdout and stderr to yours, print "
        "the verdict and usage to stderr when it is not OK, and exit with the program's exit "
        "code (128+N when killed by signal N; 1 for other verdicts without an exit code; 2 "
        "when the request itself fails).",
    )
    run.add_argument("file", help="program to run; .py is Python, .js/.cjs/.mjs JavaScript")
    run.add_argument("--runtime", choices=("python", "javascript"), help="override the extension")
    run.add_argument("--stdin", metavar="FILE", help="feed FILE (or - for your stdin) to it")
    run.add_argument(
        "--arg", action="append", default=[], metavar="ARG", help="an argument (repeatable)"
    )
    run.add_argument(
        "--target",
        default=os.environ.get("SANDBOXD_TARGET", "127.0.0.1:50051"),
        help="daemon address, HOST:PORT or unix:PATH [env SANDBOXD_TARGET; default "
        "127.0.0.1:50051]",
    )
    run.add_argument(
        "--key",
        default=os.environ.get("SANDBOXD_API_KEY"),
        help="API key [env SANDBOXD_API_KEY; not needed by a zero-config daemon]",
    )
    run.add_argument("--wall-time-ms", type=int, help="wall-time limit (default: the tenant's)")
    run.add_argument("--memory-bytes", type=int, help="memory limit (default: the tenant's)")
    run.add_argument("--timeout", type=float, help="gRPC deadline in seconds (default: none)")
    run.set_defaults(handler=_run)

    tenants.register(commands)
    health.register(commands)
    seccomp_profile.register(commands)

    demo = commands.add_parser(
        "demo",
        help="start a pool and run a Python and a JavaScript hello",
        description="Start a warm pool, run one Python and one JavaScript hello in it, and "
        "print each verdict, stdout and resource usage. Exits non-zero unless both are OK.",
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = getattr(args, "handler", None) or args.func
    exit_code: int = handler(args)
    return exit_code
