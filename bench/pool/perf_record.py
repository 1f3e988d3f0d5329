"""`perf record -a` driven through its control fifo, for bench.pool.cpu_roles.

A `Recording` starts perf with its events disabled (`-D -1`: perf takes a while to start on a
busy machine, synthesizing every task alive), waits until perf answers, and is then enabled and
disabled on command, so that a window begins and ends when the caller says. Timestamps are
CLOCK_MONOTONIC (`-k`), the clock of time.monotonic(). perf keeps recording fork and exit
records while its events are disabled (that is how it tracks tasks). `script()` returns the
lines bench/pool/perf_roles.py reads.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
from pathlib import Path

ANSWER_TIMEOUT_S = 30.0
# -B -N: no build-id collection at the end (nothing here resolves symbols); -m: a ring buffer
# large enough for every page fault of two busy CPUs.
RECORD = ["record", "-a", "-k", "CLOCK_MONOTONIC", "-B", "-N", "-m", "16M"]
SCRIPT = ["-F", "comm,pid,tid,time,event", "--show-task-events", "--show-lost-events"]


class PerfUnavailable(Exception):
    """perf is missing or refuses to record what the benchmark needs."""


def perf_binary() -> str:
    found = shutil.which("perf") or ("/usr/bin/perf" if os.path.exists("/usr/bin/perf") else None)
    if found is None:
        raise PerfUnavailable("perf is not installed (Debian: apt-get install linux-perf)")
    return found


def paranoid() -> str:
    try:
        return Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
    except OSError:
        return "unknown"


def check(perf: str, events: list[str], directory: Path) -> None:
    """Record `events` system-wide for `true` and read them back; PerfUnavailable, saying why,
    if perf cannot (not root and perf_event_paranoid > -1, an event this kernel lacks, ...)."""
    data = directory / "probe.data"
    run = subprocess.run(
        [perf, *RECORD, *events, "-o", str(data), "--", "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0:
        raise PerfUnavailable(
            f"`perf record -a {' '.join(events)}` failed (exit {run.returncode}; "
            f"kernel.perf_event_paranoid={paranoid()}, uid {os.getuid()}): "
            f"{_said(run.stderr)}"
        )
    if not any("PERF_RECORD_FORK" in line for line in script(perf, data)):
        raise PerfUnavailable("`perf script --show-task-events` shows no fork records")
    data.unlink()


def _said(stderr: str) -> str:
    """perf's first lines on stderr (its error comes first, then advice), on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " / ".join(lines[:4])[:500]


def script(perf: str, data: Path) -> list[str]:
    run = subprocess.run(
        [perf, "script", "-i", str(data), *SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if run.returncode != 0:
        raise PerfUnavailable(f"`perf script -i {data}` failed: {_said(run.stderr)}")
    return run.stdout.splitlines()


class Recording:
    """One `perf record -a <events> -o <directory>/<name>.data`, its events off until enable()."""

    def __init__(self, perf: str, events: list[str], directory: Path, name: str) -> None:
        self.data = directory / f"{name}.data"
        self.events = events
        control, ack = directory / f"{name}.control", directory / f"{name}.ack"
        for fifo in (control, ack):
            os.mkfifo(fifo)
        # Read-write, so that neither open waits for perf's end.
        self._control = os.open(control, os.O_RDWR)
        self._ack = os.open(ack, os.O_RDWR)
        argv = [perf, *RECORD, "-D", "-1", "--control", f"fifo:{control},{ack}", *events]
        self.process = subprocess.Popen(
            [*argv, "-o", str(self.data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_started(self) -> None:
        self._command("ping")  # answered once perf is in its loop

    def enable(self) -> None:
        self._command("enable")

    def disable(self) -> None:
        self._command("disable")

    def stop(self) -> Path:
        """SIGINT: perf writes the data file and exits. The data file."""
        stderr = self.close()
        ok = (0, -signal.SIGINT, 128 + signal.SIGINT)
        if self.process.returncode not in ok or not self.data.exists():
            raise PerfUnavailable(
                f"`perf record -a {' '.join(self.events)}` failed "
                f"(exit {self.process.returncode}): {_said(stderr)}"
            )
        return self.data

    def close(self) -> str:
        """Stop perf if it runs (SIGINT, then its end), once; what it wrote on stderr."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                _, self._stderr = self.process.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                _, self._stderr = self.process.communicate()
        for fd in (self._control, self._ack):
            if fd >= 0:
                os.close(fd)
        self._control = self._ack = -1
        return self._stderr or ""

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _command(self, word: str) -> None:
        os.write(self._control, word.encode() + b"\n")
        ready, _, _ = select.select([self._ack], [], [], ANSWER_TIMEOUT_S)
        if not ready or not os.read(self._ack, 16).startswith(b"ack"):
            stderr = self.close()
            raise PerfUnavailable(
                f"perf did not acknowledge `{word}` (exit {self.process.returncode}): "
                f"{_said(stderr)}"
            )
