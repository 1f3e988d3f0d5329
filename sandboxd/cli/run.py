"""`sandboxd run FILE`: run a file on a daemon; exit with the program's exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .parser import Subparsers, add_target

if TYPE_CHECKING:
    from sandboxd_client import OutputFile

EXTENSIONS = {".py": "python", ".js": "javascript", ".cjs": "javascript", ".mjs": "javascript"}


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "run",
        help="run a file on a daemon",
        description="Run FILE on a sandboxd daemon, print its stdout and stderr to yours, print "
        "the verdict and usage to stderr when it is not OK, and exit with the program's exit "
        "code (128+N when killed by signal N; 1 for other verdicts without an exit code; 2 "
        "when the request itself fails).",
    )
    parser.add_argument("file", help="program to run; .py is Python, .js/.cjs/.mjs JavaScript")
    parser.add_argument(
        "--runtime", choices=("python", "javascript"), help="override the extension"
    )
    parser.add_argument("--stdin", metavar="FILE", help="feed FILE (or - for your stdin) to it")
    parser.add_argument(
        "--arg", action="append", default=[], metavar="ARG", help="an argument (repeatable)"
    )
    add_target(parser)
    parser.add_argument(
        "--key",
        default=os.environ.get("SANDBOXD_API_KEY"),
        help="API key [env SANDBOXD_API_KEY; not needed by a zero-config daemon]",
    )
    parser.add_argument("--wall-time-ms", type=int, help="wall-time limit (default: the tenant's)")
    parser.add_argument("--memory-bytes", type=int, help="memory limit (default: the tenant's)")
    parser.add_argument("--timeout", type=float, help="gRPC deadline in seconds (default: none)")
    parser.add_argument(
        "--env",
        metavar="NAME",
        default="",
        help="run in this environment (packages the daemon's operator built; default: the bare "
        "runtime)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write the files the program leaves in its out/ folder to DIR (made if missing; "
        "existing files of the same name are replaced)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from sandboxd_client import Client, Limits, SandboxdError

    runtime = args.runtime or EXTENSIONS.get(os.path.splitext(args.file)[1].lower())
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
                runtime,
                code,
                stdin=stdin,
                args=args.arg,
                limits=limits,
                timeout_s=args.timeout,
                environment=args.env,
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
    if result.files or result.files_truncated:
        if args.out is None:
            print(
                f"sandboxd run: the program left {len(result.files)} file(s) in out/; pass "
                "--out DIR to save them",
                file=sys.stderr,
            )
        else:
            try:
                save_files(args.out, result.files)
            except (OSError, ValueError) as e:
                print(f"sandboxd run: error: saving the files: {e}", file=sys.stderr)
                return 2
        if result.files_truncated:
            print(
                "sandboxd run: some files were left out (max_output_files, max_output_files_bytes)",
                file=sys.stderr,
            )
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


def save_files(directory: str, files: Sequence[OutputFile]) -> None:
    """Write each file under `directory`, refusing a path that could leave it (the server
    never sends one: this is the client's own check) and never following a symlink at the
    file's own name."""
    os.makedirs(directory, exist_ok=True)
    for file in files:
        parts = file.path.split("/")
        if (
            file.path.startswith("/")
            or any(p in ("", ".", "..") for p in parts)
            or "\0" in file.path
        ):
            raise ValueError(f"refusing the file path {file.path!r}")
        target = os.path.join(directory, *parts)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(file.data)
