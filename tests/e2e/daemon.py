"""A real `sandboxd serve` process for the end-to-end tests: port 0, JSON logs captured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandboxd.tenants import add_tenant

START_TIMEOUT_S = 60.0


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    address: str = ""
    metrics_port: int | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    raw_stderr: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def log_messages(self) -> list[str]:
        return [entry.get("msg", "") for entry in self.logs]

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (the drain) and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        if self._reader is not None:
            self._reader.join(timeout=10)
        return rc

    def wait_for_log_entry(
        self, msg: str, timeout_s: float = 10.0, **fields: object
    ) -> dict[str, Any]:
        """The first log entry with this message and these field values."""
        deadline = time.monotonic() + timeout_s
        while True:
            for entry in list(self.logs):
                if entry.get("msg") == msg and all(entry.get(k) == v for k, v in fields.items()):
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no log {msg!r} with {fields} within {timeout_s}s")
            time.sleep(0.02)

    def wait_for_log(self, msg: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for entry in list(self.logs):
                if entry.get("msg") == msg:
                    return entry
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader take the last lines
                for entry in list(self.logs):
                    if entry.get("msg") == msg:
                        return entry
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) before logging {msg!r}:\n"
                    + "".join(self.raw_stderr)
                )
            time.sleep(0.02)
        raise AssertionError(f"no log {msg!r} within {timeout_s}s:\n" + "".join(self.raw_stderr))


def _read(daemon: Daemon) -> None:
    assert daemon.proc.stderr is not None
    for raw in daemon.proc.stderr:
        line = raw.decode(errors="replace")
        daemon.raw_stderr.append(line)
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            daemon.logs.append(entry)


def spawn(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    wrapper: Sequence[str] = (),
) -> Daemon:
    """Start `sandboxd serve ARGS` without waiting for it. `preexec_fn` runs in the child
    before the exec (to start it in a cgroup, say); `wrapper` is a command that runs the
    daemon's (a container launcher, say)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOXD_")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [*wrapper, sys.executable, "-m", "sandboxd", "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=full_env,
        preexec_fn=preexec_fn,
    )
    daemon = Daemon(proc)
    daemon._reader = threading.Thread(target=_read, args=(daemon,), daemon=True)
    daemon._reader.start()
    return daemon


def start(
    args: Sequence[str] = (), env: Mapping[str, str] | None = None, *, warm: int = 2
) -> Daemon:
    """Start a daemon on 127.0.0.1:0 and wait until it listens and its pool is warm."""
    daemon = spawn(
        ["--listen", "127.0.0.1:0", "--metrics-port", "0", "--warm-workers", str(warm), *args],
        env,
    )
    try:
        entry = daemon.wait_for_log("listening", START_TIMEOUT_S)
        daemon.address = entry["address"]
        daemon.metrics_port = entry.get("metrics_port")
    except BaseException:
        daemon.proc.kill()
        daemon.proc.wait()
        raise
    return daemon


def tenants_file(path: str, specs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Create a tenants file; returns {tenant name: API key}."""
    return {name: add_tenant(path, name, **spec) for name, spec in specs.items()}
