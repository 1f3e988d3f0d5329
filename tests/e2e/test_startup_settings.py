"""Every bad setting makes the real `sandboxd serve` exit 2 with one line naming the setting,
never a traceback: values the settings check alone (before anything starts), and values that
fail only once used (a port already taken), after the pool started and is closed again."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from .daemon import spawn

EXIT_TIMEOUT_S = 60.0
PREFIX = "sandboxd serve: error: "


def exits(args: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[int, list[str]]:
    """Run `sandboxd serve ARGS`, which must exit by itself: (status, its stderr lines that
    are not JSON log entries)."""
    daemon = spawn(args, env)
    try:
        rc = daemon.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        daemon.stop()
        raise AssertionError(f"`sandboxd serve {' '.join(args)}` did not exit") from None
    assert daemon._reader is not None
    daemon._reader.join(timeout=10)
    text = "".join(daemon.raw_stderr)
    assert "Traceback" not in text, text
    lines = [line.rstrip("\n") for line in daemon.raw_stderr]
    return rc, [line for line in lines if line and not line.startswith("{")]


def one_error(args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    rc, lines = exits(args, env)
    errors = [line for line in lines if line.startswith(PREFIX)]
    assert rc == 2, lines
    assert len(errors) == 1, lines
    return errors[0][len(PREFIX) :]


@pytest.fixture()
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--warm-workers", "0"], {}, "--warm-workers: 0 is out of range [1, 256]"),
        (
            [],
            {"SANDBOXD_WARM_WORKERS": "200", "SANDBOXD_MAX_CONCURRENT": "4000"},
            "SANDBOXD_WARM_WORKERS x 2 runtimes + SANDBOXD_MAX_CONCURRENT = 4400 workers at "
            "once, more than the 4096 worker slots (uids) the engine has",
        ),
        (
            ["--runtimes", "python,python"],
            {},
            "--runtimes: 'python,python': name each runtime once",
        ),
        (
            ["--redis-url", "redis://127.0.0.1:port/0"],
            {},
            "--redis-url: 'redis://127.0.0.1:port/0' is not a Redis URL (Port could not be cast "
            "to integer value as 'port'; redis://HOST:PORT/DB, rediss://HOST:PORT/DB or "
            "unix:///PATH)",
        ),
        (["--python", "/etc/passwd"], {}, "--python: '/etc/passwd' is not an executable file"),
        ([], {"SANDBOXD_NODE": "/no/node"}, "SANDBOXD_NODE: '/no/node' is not an executable file"),
        (
            ["--metrics-port", "0", "--metrics-host", "no-such-host.invalid"],
            {},
            "--metrics-host: 'no-such-host.invalid': not an IP address, and it does not resolve",
        ),
    ],
    ids=["warm-0", "slots", "runtime-twice", "redis-port", "python", "node", "metrics-host"],
)
def test_refused_before_anything_starts(args: list[str], env: dict[str, str], message: str) -> None:
    daemon_args = ["--listen", "127.0.0.1:0", *args]
    rc, lines = exits(daemon_args, env)
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith(PREFIX + message), lines


def test_a_tls_pair_that_does_not_load(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    key.write_text("not a key\n")
    error = one_error(["--listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key)])
    assert error.startswith("--tls-cert, --tls-key: cannot load the certificate and its key: ")


def test_a_listen_port_already_taken(taken_port: int) -> None:
    """Found only when binding, after the pool started: still one line, exit 2, and the pool
    is closed (the session's leftover check finds no process)."""
    listen = f"127.0.0.1:{taken_port}"
    error = one_error(["--listen", listen, "--warm-workers", "1"])
    assert error.startswith(f"--listen: cannot listen on {listen} (the port is taken"), error


def test_a_metrics_port_already_taken(taken_port: int) -> None:
    error = one_error(
        ["--listen", "127.0.0.1:0", "--warm-workers", "1"],
        {"SANDBOXD_METRICS_PORT": str(taken_port)},
    )
    assert error == (
        f"SANDBOXD_METRICS_PORT: cannot serve metrics on 127.0.0.1:{taken_port}: "
        "Address already in use"
    )
