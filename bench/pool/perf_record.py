"""`perf record -a` driven through its control fifo, for bench.pool.cpu_roles.

A `Recording` starts perf with its events disabled (`-D -1`: perf takes a while to start on a
busy machine, synthesizing every task alive), waits until perf answers, and is then enabled and
disabled on command, so that a window begins and ends when the caller says. Timestamps are
CLOCK_MONOTONIC (`-k`), the clock of time.monotonic(). perf keeps recording fork and exit
records while its events are disabled (that is how it tracks tasks). `script()` returns the
lines bench/pool/perf_roles.py reads. `check()` runs a short Recording of its own first, so that a
perf that lacks an option or names an event differently fails before anything is measured.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.pool.perf_roles import Sample, Task, parse_line

ANSWER_TIMEOUT_S = 30.0  # for perf to acknowledge a command on its control fifo
POLL_S = 0.1  # how often a wait for the acknowledgement checks that perf still runs
STOP_TIMEOUT_S = 120.0  # for perf to write its data and exit after SIGINT
SCRIPT_TIMEOUT_S = 600.0  # for `perf script` to print a recording
PROBE_WINDOW_S = 0.1  # how long check() records, enabled, while a process is made
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


def check(perf: str, events: list[str], event: str, directory: Path, name: str) -> None:
    """Record `events` system-wide as the benchmark does (a Recording: `-D -1`, its control
    fifo), enabled for PROBE_WINDOW_S while `true` runs, and read them back; PerfUnavailable,
    saying why, unless that shows fork records and samples whose event is `event` (not root
    and perf_event_paranoid > -1, an event this kernel lacks, a perf without --control, an
    event perf script names otherwise, ...)."""
    what = f"`perf record -a -D -1 --control fifo:... {' '.join(events)}`"
    with Recording(perf, events, directory, name) as probe:
        probe.wait_started()
        probe.enable()
        try:
            subprocess.run(["true"], check=True, timeout=PROBE_WINDOW_S + ANSWER_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as e:
            raise PerfUnavailable(f"{what}: could not run `true` while recording: {e}") from e
        time.sleep(PROBE_WINDOW_S)
        probe.disable()
        data = probe.stop()
    lines = script(perf, data)
    data.unlink()
    records = [parse_line(line) for line in lines]
    if not any(isinstance(r, Task) and r.kind == "FORK" and r.time_s > 0 for r in records):
        raise PerfUnavailable(f"{what}: `perf script --show-task-events` shows no fork records")
    seen = {r.event for r in records if isinstance(r, Sample)}
    if event not in seen:
        raise PerfUnavailable(
            f"{what}: no `{event}` sample in {PROBE_WINDOW_S} s "
            f"(sample events perf script shows: {', '.join(sorted(seen)) or 'none'})"
        )


def _said(stderr: str) -> str:
    """perf's first lines on stderr (its error comes first, then advice), on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " / ".join(lines[:4])[:500]


def script(perf: str, data: Path) -> list[str]:
    argv = [perf, "script", "-i", str(data), *SCRIPT]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PerfUnavailable(
            f"`perf script -i {data}` did not finish in {SCRIPT_TIMEOUT_S:.0f} s"
        ) from None
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
        if self._stderr is None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            try:
                _, stderr = self.process.communicate(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                _, stderr = self.process.communicate()
                stderr = f"did not exit within {STOP_TIMEOUT_S:.0f} s of SIGINT (killed); {stderr}"
            self._stderr = stderr or ""
        for fd in (self._control, self._ack):
            if fd >= 0:
                os.close(fd)
        self._control = self._ack = -1
        return self._stderr

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _command(self, word: str) -> None:
        """Send `word`; PerfUnavailable unless perf acknowledges it within ANSWER_TIMEOUT_S
        (an older perf without --control, or one that refused its events, has exited: that is
        seen within POLL_S)."""
        os.write(self._control, word.encode() + b"\n")
        give_up = time.monotonic() + ANSWER_TIMEOUT_S
        answer = b""
        while time.monotonic() < give_up and self.process.poll() is None:
            ready, _, _ = select.select([self._ack], [], [], POLL_S)
            if ready:
                answer = os.read(self._ack, 16)
                if answer.startswith(b"ack"):
                    return
                break
        running = self.process.poll() is None
        stderr = self.close()
        if answer:
            how = f"but answered {answer!r}"
        elif running:
            how = f"in {ANSWER_TIMEOUT_S:.0f} s"
        else:
            how = f"(exit {self.process.returncode})"
        raise PerfUnavailable(
            f"`perf record -a {' '.join(self.events)}` did not acknowledge `{word}` {how}"
            f" (kernel.perf_event_paranoid={paranoid()}, uid {os.getuid()}): {_said(stderr)}"
        )
