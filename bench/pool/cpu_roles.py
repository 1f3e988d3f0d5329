"""Where one single-use pool execution's CPU goes, and its page faults, by process role.

    python -m bench.pool.cpu_roles [--duration-s 6] [--threads 2] [--runtimes python,javascript]

`bench.pool.cpu_cost` gives the machine's busy CPU per pool execution; this splits it by the
process it was spent in. The roles (root mode):

    caller       this process: the harness's threads and the pool's (replenisher, ...)
    zygote       pool.zygote_pid
    template     Python: the zygote's long-lived child that the workers are forked from
    confining child/init
                 a worker's first process (made by the template with CLONE_PARENT, or by the
                 zygote on the exec path: Node): it confines itself, then forks the program and
                 stays behind as PID 1 of the worker's namespace
    program      the init's child: runs the request (Python in place; Node exec'd, with its
                 threads)
    exit helper  Python: the program's CLONE_VM child, which runs no Python
    kernel <x>   kernel threads, by comm prefix (ksoftirqd, rcu, ...); a kworker with the
                 workqueue in its name ("kernel kworker netns")
    perf         the measurement itself (not in the total)
    other        anything else on the machine

While the harness drives hello executions back to back from N threads (bench/common/
harness.py) on cpu_cost's pool, after a second's ramp-up, `perf record -a` samples two windows
one after the other (bench/pool/perf_record.py: both perf processes are started beforehand,
their events off, and enabled in turn): CPU samples (`cpu-clock` at 1999 Hz on every CPU), then
every page fault (`page-faults`, period 1) in a window of its own, so that recording ~200 000
faults a second adds nothing to the CPU measured. perf's lines are classified in time order by
bench/pool/perf_roles.py, the processes alive just before a window opens being named from
/proc (the caller, perf, the tree under the zygote, kernel threads; a kworker by the workqueue
its name carried then: the one it was running or last ran as the window opened, not
necessarily the one of each sample). A window's executions are the
harness's completions between its first and last sample (perf's timestamps are CLOCK_MONOTONIC,
as time.monotonic()). Per execution: CPU ms by role (samples / 1999 Hz), page faults by role;
and per role the median faults of one process, over the processes made and gone inside the
window.

The windows are timed back from the harness's deadline, the second closing TAIL_S before it;
/proc is read before each window is enabled (perf, already running, tracks every process made
after that), so that the reading costs no CPU inside a window.

Needs perf allowed to sample the whole system (root here): if perf is missing or refuses, or
is too old for the options used (checked by a short recording made the same way, before the
pool starts), this says why and exits 2, measuring nothing. It exits 2 too, printing no
figure, if the harness fails or a window is unusable: no sample of its event, no execution
finished in it, events lost or lines of perf script not understood, or it is not inside the
harness's run (perf_roles.check_window). Prints one JSON line: `machine` says what it ran on
(date, kernel, commit, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import sandboxd_pool
from bench.common.harness import measure_throughput
from bench.common.machine import machine_info
from bench.common.runtimes import BenchRuntime, select_runtimes
from bench.common.stats import Attempt, ThroughputRun
from bench.pool.cpu_cost import warm_pool
from bench.pool.engine import pool_runner
from bench.pool.perf_record import PerfUnavailable, Recording, check, perf_binary, script
from bench.pool.perf_roles import (
    CALLER,
    EXIT_HELPER,
    IDLE,
    INIT,
    KERNEL,
    PERF,
    PROGRAM,
    TEMPLATE,
    ZYGOTE,
    BadWindow,
    Lineage,
    Tally,
    check_window,
    classify,
    kernel_group,
)

FREQUENCY_HZ = 1999
RAMP_S = 1.0  # the harness's ramp-up, before the first window
TAIL_S = 0.25  # after the last window closes, before the harness's deadline
MIN_WINDOW_S = 0.5  # the shortest window measured
VERSION_TIMEOUT_S = 10.0  # for `perf --version`
CPU_EVENT, FAULT_EVENT = "cpu-clock", "page-faults"  # as perf script names them
CPU_EVENTS = ["-F", str(FREQUENCY_HZ), "-e", CPU_EVENT]
FAULT_EVENTS = ["-e", f"{FAULT_EVENT}/period=1/"]


class MeasurementFailed(Exception):
    """The run cannot give figures: the harness failed, or a window is unusable."""


def _stat(pid: int) -> tuple[int, str] | None:
    """The parent pid and the name of a live process (/proc/<pid>/stat: the name in
    parentheses, whole: a kworker's with the workqueue it runs or last ran)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    close = raw.rfind(")")
    return int(raw[close + 2 :].split()[1]), raw[raw.find("(") + 1 : close]


def _pid_levels(pid: int) -> int:
    """How many PID namespaces `pid` is seen in (NSpid): 1 in the host's alone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return len(line.split()) - 1
    except OSError:
        pass
    return 1


def snapshot_roles(
    caller: int, zygote: int, perf: tuple[int, ...], lineage: Lineage
) -> dict[int, str]:
    """Roles of the processes alive now, from /proc: the caller, perf, the zygote and the tree
    under it (a child of the zygote in the host's PID namespace alone is a template, one in
    a namespace of its own a confining child/init), and kernel threads (kthreadd's children),
    grouped by their name now (kernel_group): perf shows 15 characters of the name it read at
    its start, /proc the whole name, a kworker's workqueue included."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)], names[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    roles = {
        pid: kernel_group(names[pid]) or KERNEL
        for pid, parent in parents.items()
        if pid == 2 or parent == 2
    }
    roles[caller] = CALLER
    roles.update(dict.fromkeys(perf, PERF))
    roles[zygote] = ZYGOTE
    for pid in children.get(zygote, []):
        roles[pid] = TEMPLATE if _pid_levels(pid) == 1 else INIT
        for program in children.get(pid, []) if roles[pid] == INIT else []:
            roles[program] = PROGRAM
            for nth, child in enumerate(sorted(children.get(program, [])), 1):
                roles[child] = lineage.child_of(PROGRAM, nth)
    return roles


@dataclass
class Window:
    tally: Tally
    executions: int  # the harness's completions between the window's first and last sample


def ms_per_exec(samples: int, executions: int) -> float:
    return round(samples * 1000 / FREQUENCY_HZ / executions, 2)


def report(cpu: Window, faults: Window) -> dict[str, object]:
    """The figures of two windows that passed check_window (executions > 0, window_s > 0)."""
    busy = {role: n for role, n in cpu.tally.cpu_samples.items() if role not in (IDLE, PERF)}
    by_role = {
        role: ms_per_exec(n, cpu.executions)
        for role, n in sorted(busy.items(), key=lambda item: -item[1])
    }
    counted = {role: n for role, n in faults.tally.faults.items() if role != PERF}
    per_process = faults.tally.faults_per_process()
    all_samples = sum(cpu.tally.cpu_samples.values())
    return {
        "cpu_window": {
            "seconds": round(cpu.tally.window_s, 2),
            "executions": cpu.executions,
            "exec_s": round(cpu.executions / cpu.tally.window_s, 1),
            "programs_made": cpu.tally.made(PROGRAM),
            "busy_share": round(sum(busy.values()) / all_samples, 3),
            "lost_events": cpu.tally.lost,
            "unparsed_lines": cpu.tally.unparsed,
        },
        "cpu_ms_per_exec": ms_per_exec(sum(busy.values()), cpu.executions),
        "cpu_ms_per_exec_by_role": by_role,
        "perf_own_cpu_ms_per_exec": ms_per_exec(cpu.tally.cpu_samples[PERF], cpu.executions),
        "fault_window": {
            "seconds": round(faults.tally.window_s, 2),
            "executions": faults.executions,
            "exec_s": round(faults.executions / faults.tally.window_s, 1),
            "programs_made": faults.tally.made(PROGRAM),
            "lost_events": faults.tally.lost,
            "unparsed_lines": faults.tally.unparsed,
        },
        "faults_per_exec": round(sum(counted.values()) / faults.executions, 1),
        "faults_per_exec_by_role": {
            role: round(n / faults.executions, 1)
            for role, n in sorted(counted.items(), key=lambda item: -item[1])
        },
        "faults_per_process": {
            role: {"median": median, "processes": n} for role, (median, n) in per_process.items()
        },
    }


def measure_runtime(
    runtime: BenchRuntime, threads: int, duration_s: float, perf: str, directory: Path
) -> dict[str, object]:
    window_s = (duration_s - RAMP_S - TAIL_S) / 2
    if window_s < MIN_WINDOW_S:
        raise SystemExit(
            f"--duration-s {duration_s}: too short for two windows of {MIN_WINDOW_S} s"
        )
    lineage = Lineage(
        zygote_child=TEMPLATE if runtime.name == "python" else INIT,
        program_first_child=EXIT_HELPER if runtime.name == "python" else PROGRAM,
    )
    finished: list[float] = []  # time.monotonic() of every OK completion
    runs: list[ThroughputRun] = []
    harness_errors: list[BaseException] = []
    windows: list[tuple[str, str, Path, dict[int, str]]] = []
    with (
        warm_pool(runtime) as pool,
        Recording(perf, CPU_EVENTS, directory, f"{runtime.name}-cpu") as cpu,
        Recording(perf, FAULT_EVENTS, directory, f"{runtime.name}-faults") as faults,
    ):
        run_once = pool_runner(sandboxd_pool, pool, runtime)

        def timed() -> Attempt:
            attempt = run_once()
            if attempt.ok:
                finished.append(time.monotonic())
            return attempt

        def drive() -> None:
            try:
                runs.append(measure_throughput(timed, threads, duration_s))
            except BaseException as e:  # reported after the join, in this thread
                harness_errors.append(e)

        cpu.wait_started()
        faults.wait_started()
        perf_pids = (cpu.pid, faults.pid)
        harness = threading.Thread(target=drive)
        # The harness's deadline is its start + duration_s, its start a little after this:
        # the windows are timed back from this one, which is no later.
        run_start_s = time.monotonic()
        deadline_s = run_start_s + duration_s
        closes_s = (deadline_s - TAIL_S - window_s, deadline_s - TAIL_S)
        harness.start()
        try:
            time.sleep(RAMP_S)
            for (name, event, recording), close_s in zip(
                (("CPU", CPU_EVENT, cpu), ("page-fault", FAULT_EVENT, faults)),
                closes_s,
                strict=True,
            ):
                # Read /proc before the window: perf, running since wait_started(), tracks
                # every process made from here on, so nothing this misses is unnamed.
                known = snapshot_roles(os.getpid(), pool.zygote_pid, perf_pids, lineage)
                if time.monotonic() >= close_s - MIN_WINDOW_S:
                    raise MeasurementFailed(
                        f"the {name} window would open less than {MIN_WINDOW_S} s before it "
                        f"must close ({TAIL_S} s before the harness's deadline)"
                    )
                recording.enable()
                time.sleep(max(0.0, close_s - time.monotonic()))
                recording.disable()
                if (late_s := time.monotonic() - deadline_s) > 0:
                    raise MeasurementFailed(
                        f"the {name} window closed {late_s:.3f} s after the harness's deadline"
                    )
                windows.append((name, event, recording.data, known))
        finally:
            harness.join()
        cpu.stop()
        faults.stop()
    if harness_errors:
        raise MeasurementFailed(f"the harness failed: {harness_errors[0]!r}")
    if not runs:
        raise MeasurementFailed("the harness returned no result")
    if runs[0].failures:
        # Their CPU and faults are in the windows, but a figure is per OK execution.
        raise MeasurementFailed(
            f"{runs[0].failures} executions failed (first: {runs[0].first_error}): a figure per "
            "execution would count their cost against the others"
        )
    # perf script reads the data once the pool is gone, in no window.
    tallies = []
    for name, event, data, known in windows:
        tally = classify(script(perf, data), known, lineage, CPU_EVENT, FAULT_EVENT)
        data.unlink()
        start, end = tally.first_time_s, tally.last_time_s
        executions = 0 if start is None or end is None else sum(start <= t <= end for t in finished)
        try:
            check_window(name, tally, event, executions, (run_start_s, deadline_s))
        except BadWindow as e:
            raise MeasurementFailed(str(e)) from None
        tallies.append(Window(tally, executions))
    run = runs[0]
    return {
        "exec_s": round(run.per_s, 1),
        "failures": run.failures,
        **({"first_error": run.first_error} if run.first_error else {}),
        **report(tallies[0], tallies[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration-s", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtimes", default="python,javascript")
    args = parser.parse_args()
    runtimes = select_runtimes(args.runtimes.split(","))
    with tempfile.TemporaryDirectory(prefix="sandboxd-cpu-roles-") as tmp:
        try:
            perf = perf_binary()
            check(perf, CPU_EVENTS, CPU_EVENT, Path(tmp), "probe-cpu")
            check(perf, FAULT_EVENTS, FAULT_EVENT, Path(tmp), "probe-faults")
            out: dict[str, object] = {
                "machine": machine_info(runtimes),
                "perf": _perf_version(perf),
                "duration_s": args.duration_s,
                "threads": args.threads,
                "frequency_hz": FREQUENCY_HZ,
            }
            for runtime in runtimes:
                out[runtime.name] = measure_runtime(
                    runtime, args.threads, args.duration_s, perf, Path(tmp)
                )
        except (PerfUnavailable, MeasurementFailed) as e:
            print(f"cpu_roles: cannot measure: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))


def _perf_version(perf: str) -> str:
    try:
        run = subprocess.run(
            [perf, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return run.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
