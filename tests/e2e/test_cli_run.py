"""`sandboxd run FILE` against a real daemon: output passed through, verdict and usage on
stderr when not OK, the program's exit code as ours."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

from .conftest import TenantDaemon
from .daemon import Daemon


def sandboxd_run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sandboxd", "run", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_run_python_file_with_stdin_and_args(zero_daemon: Daemon, tmp_path: Path) -> None:
    prog = tmp_path / "hello.py"
    prog.write_text("import sys\nprint(sys.stdin.read().strip(), *sys.argv[1:])\n")
    done = sandboxd_run(
        str(prog),
        "--target",
        zero_daemon.address,
        "--stdin",
        "-",
        "--arg",
        "a",
        "--arg",
        "b",
        stdin=b"in",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"in a b\n"
    assert done.stderr == b""


def test_run_exits_with_the_program_status_and_reports_the_verdict(
    zero_daemon: Daemon, tmp_path: Path
) -> None:
    prog = tmp_path / "fail.js"
    prog.write_text("console.log('partial'); console.error('bad'); process.exit(5);")
    done = sandboxd_run(str(prog), "--target", zero_daemon.address)
    assert done.returncode == 5
    assert done.stdout == b"partial\n"
    assert done.stderr.startswith(b"bad\n")
    assert b"verdict RUNTIME_ERROR" in done.stderr


def test_run_timeout_is_128_plus_signal(zero_daemon: Daemon, tmp_path: Path) -> None:
    prog = tmp_path / "sleep.py"
    prog.write_text("import time; time.sleep(30)")
    done = sandboxd_run(str(prog), "--target", zero_daemon.address, "--wall-time-ms", "300")
    assert done.returncode == 128 + 9
    assert b"verdict TIMEOUT" in done.stderr


def test_run_needs_a_known_extension_or_runtime(zero_daemon: Daemon, tmp_path: Path) -> None:
    prog = tmp_path / "prog.txt"
    prog.write_text("print(1)")
    done = sandboxd_run(str(prog), "--target", zero_daemon.address)
    assert done.returncode == 2
    assert b"--runtime" in done.stderr
    done = sandboxd_run(str(prog), "--target", zero_daemon.address, "--runtime", "python")
    assert done.returncode == 0 and done.stdout == b"1\n"


def test_run_with_key_and_request_errors(tenant_daemon: TenantDaemon, tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text("print('ok')")
    address = tenant_daemon.daemon.address
    done = sandboxd_run(str(prog), "--target", address)
    assert done.returncode == 2
    assert b"UNAUTHENTICATED" in done.stderr
    done = sandboxd_run(str(prog), "--target", address, "--key", tenant_daemon.keys["alpha"])
    assert done.returncode == 0 and done.stdout == b"ok\n"


def test_demo_for_real() -> None:
    """`sandboxd demo` with its real pool (tests/unit/test_cli.py fakes it): both hellos from
    inside the jail (hostname `sandbox`), exit 0, and nothing left running."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "sandboxd", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done
    usage = (
        r"usage:   wall \d+\.\d ms, cpu \d+\.\d ms, peak memory \d+\.\d MiB; "
        r"queue wait \d+\.\d ms(, cold start)?"
    )
    expected = [
        "== Python ==",
        "verdict: OK (exit 0)",
        f"stdout:  hello from Python {platform.python_version()} on sandbox",
        usage,
        "== JavaScript ==",
        "verdict: OK (exit 0)",
        f"stdout:  hello from Node {node.stdout.strip()} on sandbox",
        usage,
    ]
    lines = done.stdout.splitlines()
    assert len(lines) == len(expected), done.stdout
    for line, want in zip(lines, expected, strict=True):
        assert line == want or (want is usage and re.fullmatch(usage, line)), (line, want)
