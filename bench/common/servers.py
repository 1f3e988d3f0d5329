"""The two gRPC servers the e2e benchmark talks to, each a subprocess of the benchmark.

- daemon: `python -m sandboxd serve --listen 127.0.0.1:0 --warm-workers N` (the warm pool)
- bwrap:  `python -m bench.e2e.bwrap_server --listen 127.0.0.1:0` (the same servicer,
          per-request bubblewrap behind it)

Both log JSON lines on stderr, which go to a temporary file (a pipe nobody reads would fill
up with the daemon's per-execution log lines and block it); the address comes from the line
whose msg is "listening". `stop()` sends SIGTERM and waits for the exit (the daemon drains and
closes its pool), killing only if that takes longer than the timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


class ServerFailed(RuntimeError):
    pass


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""
    listening: dict[str, Any] = field(default_factory=dict)

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for entry in self.log_entries():
                if entry.get("msg") == "listening" and entry.get("address"):
                    self.listening = entry
                    self.address = str(entry["address"])
                    return self.address
            if self.proc.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited ({self.proc.returncode}) before listening:\n{self.tail()}"
                )
            time.sleep(0.02)
        raise ServerFailed(f"{self.name} did not listen within {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait; SIGKILL if it does not exit in time. The exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log_path.unlink(missing_ok=True)
        return rc


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOXD_")}
    env.pop("PYTHONPATH", None)
    return env


def _spawn(name: str, argv: list[str]) -> ServerProcess:
    fd, path = tempfile.mkstemp(prefix=f"sandboxd-bench-{name}-", suffix=".log")
    try:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fd,
            env=_env(),
        )
    finally:
        os.close(fd)
    server = ServerProcess(name, proc, Path(path))
    try:
        server.wait_listening()
    except BaseException:
        server.stop(timeout_s=10)
        raise
    return server


def start_daemon(
    warm_workers: int,
    python: str,
    node: str | None,
    *settings: str,
    name: str = "daemon",
    launcher: tuple[str, ...] = ("-m", "sandboxd"),
) -> ServerProcess:
    """`sandboxd serve` on 127.0.0.1:0 with these workers and interpreters (Python only
    without `node`) and any other settings. `launcher`: what runs `serve ARGS` (the profile
    runs the daemon's main through bench.profile.daemon)."""
    argv = [sys.executable, *launcher, "serve", "--listen", "127.0.0.1:0"]
    argv += ["--warm-workers", str(warm_workers), "--python", python]
    argv += ["--node", node] if node else ["--runtimes", "python"]
    return _spawn(name, [*argv, *settings])


def start_bwrap_server(python: str, node: str | None) -> ServerProcess:
    argv = [sys.executable, "-m", "bench.e2e.bwrap_server", "--listen", "127.0.0.1:0"]
    argv += ["--python", python]
    if node:
        argv += ["--node", node]
    return _spawn("bwrap", argv)
