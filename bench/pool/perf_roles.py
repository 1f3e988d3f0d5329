"""Which process role each `perf script` line belongs to (pure: text in, tallies out).

Read by `bench.pool.cpu_roles`, which records the machine with `perf record -a` and prints
`perf script -F comm,pid,tid,time,event --show-task-events --show-lost-events`:

    <comm> <pid>/<tid> <time>: cpu-clock:                         a CPU sample
    <comm> <pid>/<tid> <time>: page-faults/period=1/:             one page fault
    <comm> <pid>/<tid> <time>: PERF_RECORD_FORK(c:ct):(p:pt)      task ct of process c made
                                                                  by task pt of process p
    <comm> <pid>/<tid> <time>: PERF_RECORD_EXIT(c:ct):(p:pt)      task ct of process c exited
    <comm> <pid>/<tid> <time>: PERF_RECORD_LOST lost 27           events the buffer dropped

<pid> is the task's process (tgid), <tid> the task. The fork records (perf's own task events,
always recorded with -a) are used rather than the sched:sched_process_fork tracepoint: the
tracepoint gives the child's task id only, so a new thread cannot be told from a new process,
while the record carries both ids of both sides (a thread: c == p).

Lines are classified in the order given (perf script's time order). A process's role is decided
when its fork is seen: by its parent process's role and how many processes that parent had
made so far (`Lineage`). Pids are reused within seconds, so every fork starts a new process
record whatever the pid held before. A process never seen forking (it existed when perf
started) takes its role from `known` (pid -> role, read from /proc by the caller as the window
opened), else from its comm (a kernel thread), else "other". Threads are their process's role.
The fork records perf synthesizes for the tasks that already existed (time 0) are skipped.

The window is from the first sample (cpu-clock or page-faults) to the last. perf tracks tasks
from its own start, before its events are enabled, so the fork and exit records before the
window build the process table the window starts with; a process made while perf was starting
up may have been missed, and its children called "other": when the window opens, a process
still "other" takes its role from `known` if it is there.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CALLER = "caller"  # the benchmark process: the harness's threads and the pool's
ZYGOTE = "zygote"
TEMPLATE = "template"  # the Python template (a child of the zygote)
INIT = "confining child/init"  # the worker's first process, PID 1 of its namespace once confined
PROGRAM = "program"  # the init's child that runs the request (Python, or exec'd node)
EXIT_HELPER = "exit helper"  # the Python program's CLONE_VM child (runs no Python)
KERNEL = "kernel"  # reported by comm (kernel_group): "kernel ksoftirqd", "kernel kworker ne", ...
PERF = "perf"  # the measurement itself
OTHER = "other"
IDLE = "idle"  # pid 0: not busy CPU

# Kernel threads named by what their comm starts with (kworker/1:2-events -> "kworker").
KERNEL_PREFIXES = (
    "kworker",
    "ksoftirqd",
    "rcu",
    "migration",
    "kswapd",
    "kcompactd",
    "khugepaged",
    "kthreadd",
    "kdamond",
    "jbd2",
    "cpuhp",
    "watchdog",
    "irq/",
    "kauditd",
    "oom_reaper",
    "khungtaskd",
    "kblockd",
    "pool_workqueue",
)

_LINE = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+(?:\[\d+\]\s+)?"
    r"(?P<time>\d+\.\d+):\s+(?P<rest>.*)$"
)
# kworker/<cpu>:<n>[H], kworker/u<pool>:<n>, kworker/R-<wq> (a rescuer), then +/- and the
# workqueue last run (wq_worker_comm).
_WORKQUEUE = re.compile(r"^kworker/[^+-]*[+-](.+)$")
_TASK = re.compile(r"^PERF_RECORD_(?P<kind>FORK|EXIT)\((\d+):(\d+)\):\((\d+):(\d+)\)")


@dataclass(frozen=True)
class Sample:
    time_s: float
    comm: str
    pid: int  # the process (tgid)
    tid: int
    event: str  # "cpu-clock", "page-faults", ...


@dataclass(frozen=True)
class Task:
    """A fork or exit record: task `tid` of process `pid`, made (fork) by task `parent_tid` of
    process `parent_pid` (for an exit: its parent process)."""

    time_s: float
    comm: str  # the forking task's (an exit: the exiting task's)
    kind: str  # "FORK" or "EXIT"
    pid: int
    tid: int
    parent_pid: int
    parent_tid: int


@dataclass(frozen=True)
class Lost:
    time_s: float
    events: int  # how many the ring buffer dropped


@dataclass(frozen=True)
class Ignored:
    """A record read and not needed: PERF_RECORD_COMM (a comm change, an exec), ..."""

    time_s: float
    kind: str  # "PERF_RECORD_COMM", ...


def parse_line(line: str) -> Sample | Task | Lost | Ignored | None:
    """One line of `perf script` output; None for a line it cannot read."""
    match = _LINE.match(line)
    if match is None:
        return None
    time_s = float(match["time"])
    rest = match["rest"].strip()
    if rest.startswith("PERF_RECORD_LOST"):
        count = re.search(r"(\d+)\s*$", rest)
        return Lost(time_s, int(count[1]) if count else 1)
    task = _TASK.match(rest)
    if task is not None:
        pid, tid, ppid, ptid = (int(task.group(i)) for i in range(2, 6))
        return Task(time_s, match["comm"], task["kind"], pid, tid, ppid, ptid)
    if rest.startswith("PERF_RECORD_"):
        return Ignored(time_s, rest.split(":", 1)[0].split()[0])
    event = rest.split(":", 1)[0].strip().split()[-1] if rest else ""
    event = event.split("/", 1)[0]  # page-faults/period=1/ -> page-faults
    return Sample(time_s, match["comm"], int(match["pid"]), int(match["tid"]), event)


def kernel_group(comm: str) -> str | None:
    """The group of a kernel thread by its comm, or None if the comm starts with none of
    KERNEL_PREFIXES: "kernel ksoftirqd" for ksoftirqd/1; a kworker keeps the workqueue its name
    carries after `+` (running one of its items) or `-` (last ran one): kworker/u8:1+netns is
    "kernel kworker netns", kworker/1:2 "kernel kworker".

    That suffix is the name the kernel gave /proc when perf named the thread (perf's start, or
    the kworker's fork), not at each sample, and perf keeps 15 characters of a comm:
    kworker/u8:1+netns reaches perf script as kworker/u8:1+ne, so "kernel kworker ne"."""
    for prefix in KERNEL_PREFIXES:
        if comm.startswith(prefix):
            group = f"{KERNEL} {prefix.rstrip('/')}"
            workqueue = _WORKQUEUE.match(comm) if prefix == "kworker" else None
            return f"{group} {workqueue[1]}" if workqueue else group
    return None


@dataclass(frozen=True)
class Lineage:
    """The role of a process made by a process of a known role, the runtime's tree:

    - the zygote makes templates (Python) or confining children (exec path: Node);
    - a template makes confining children (CLONE_PARENT: the zygote is their parent, but the
      fork runs in the template, and perf names the template);
    - a confining child/init makes the program (its first and only child);
    - a program's first child is the exit helper (Python), its later ones (Node's first too)
      belong to the program;
    - anything made by the caller, the kernel, perf or an unknown process takes its maker's role.
    """

    zygote_child: str = TEMPLATE
    program_first_child: str = EXIT_HELPER

    def child_of(self, parent_role: str, nth: int) -> str:
        """`nth`: 1 for the parent's first child process seen."""
        if parent_role == ZYGOTE:
            return self.zygote_child
        if parent_role == TEMPLATE:
            return INIT
        if parent_role == INIT:
            return PROGRAM
        if parent_role == PROGRAM:
            return self.program_first_child if nth == 1 else PROGRAM
        return parent_role


@dataclass
class Process:
    """One process as seen in the recording (a pid reused later is another Process)."""

    pid: int
    role: str
    forked_at_s: float | None = None  # None: it existed before perf started tracking tasks
    exited_at_s: float | None = None
    children: int = 0
    faults: int = 0


@dataclass
class Tally:
    """What one recording's window held (the window: see the module docstring)."""

    cpu_samples: Counter[str] = field(default_factory=Counter)  # by reported role
    faults: Counter[str] = field(default_factory=Counter)
    processes: list[Process] = field(default_factory=list)  # every process record, in order
    first_time_s: float | None = None  # the window's first sample
    last_time_s: float | None = None  # and its last
    samples: Counter[str] = field(default_factory=Counter)  # every sample line, by its event
    lost: int = 0  # events dropped (PERF_RECORD_LOST): the ring buffer overflowed
    unparsed: int = 0  # non-empty lines parse_line could not read

    @property
    def window_s(self) -> float:
        if self.first_time_s is None or self.last_time_s is None:
            return 0.0
        return self.last_time_s - self.first_time_s

    def inside(self, time_s: float | None) -> bool:
        return (
            time_s is not None
            and self.first_time_s is not None
            and self.last_time_s is not None
            and self.first_time_s <= time_s <= self.last_time_s
        )

    def made(self, role: str) -> int:
        """Processes of `role` made inside the window."""
        return sum(p.role == role and self.inside(p.forked_at_s) for p in self.processes)

    def whole(self) -> list[Process]:
        """The processes made and exited inside the window: all their faults were seen."""
        return [
            p for p in self.processes if self.inside(p.forked_at_s) and self.inside(p.exited_at_s)
        ]

    def faults_per_process(self) -> dict[str, tuple[float, int]]:
        """Per role: (median faults, how many processes) over the whole processes."""
        by_role: dict[str, list[int]] = {}
        for process in self.whole():
            by_role.setdefault(process.role, []).append(process.faults)
        return {role: (float(statistics.median(v)), len(v)) for role, v in sorted(by_role.items())}


def classify(
    lines: Iterable[str],
    known: Mapping[int, str],
    lineage: Lineage,
    cpu_event: str = "cpu-clock",
    fault_event: str = "page-faults",
) -> Tally:
    """Tally CPU samples and page faults by role, and every process's faults (see the module
    docstring). `known` is read when the window starts: a process alive then whose maker perf
    never saw (made while perf was starting) takes its role from there too."""
    tally = Tally()
    live: dict[int, Process] = {}  # tgid -> the process that holds it now

    def process_of(pid: int, comm: str) -> Process:
        process = live.get(pid)
        if process is None:
            role = known.get(pid) or (KERNEL if kernel_group(comm) else OTHER)
            process = live[pid] = Process(pid, role)
            tally.processes.append(process)
        return process

    for line in lines:
        record = parse_line(line)
        if record is None:
            if line.strip():
                tally.unparsed += 1
            continue
        if isinstance(record, Lost):
            tally.lost += record.events
            continue
        if isinstance(record, Ignored):
            continue
        if record.time_s == 0.0:  # what perf synthesized for the tasks alive at its start
            continue
        if isinstance(record, Task):
            if record.kind == "FORK" and record.pid != record.parent_pid:
                parent = process_of(record.parent_pid, record.comm)
                parent.children += 1
                role = lineage.child_of(parent.role, parent.children)
                child = live[record.pid] = Process(record.pid, role, forked_at_s=record.time_s)
                tally.processes.append(child)
            elif record.kind == "EXIT" and record.pid == record.tid and record.pid in live:
                live[record.pid].exited_at_s = record.time_s
            continue
        tally.samples[record.event] += 1
        if record.event not in (cpu_event, fault_event):
            continue
        if tally.first_time_s is None:
            tally.first_time_s = record.time_s
            for process in live.values():
                if process.role == OTHER and process.pid in known:
                    process.role = known[process.pid]
        tally.last_time_s = record.time_s
        if record.pid == 0:
            if record.event == cpu_event:
                tally.cpu_samples[IDLE] += 1
            continue
        process = process_of(record.pid, record.comm)
        role = process.role
        if role == KERNEL:
            role = kernel_group(record.comm) or f"{KERNEL} {record.comm.split('/')[0]}"
        if record.event == cpu_event:
            tally.cpu_samples[role] += 1
        else:
            tally.faults[role] += 1
            process.faults += 1
    return tally


class BadWindow(Exception):
    """A window whose figures would be made up or wrong (see check_window)."""


def check_window(
    name: str,
    tally: Tally,
    event: str,
    executions: int,
    run_s: tuple[float, float],
) -> None:
    """BadWindow, saying why, unless the window `name` is measurable: it holds samples of
    `event` (perf may name an event differently: then every sample is dropped) over a time
    greater than 0, the harness finished executions inside it, perf dropped no event and every
    line was read, and the window lies inside the harness's run `run_s` (start, deadline:
    CLOCK_MONOTONIC seconds, as perf's timestamps)."""
    problems = []
    if tally.samples[event] == 0:
        seen = ", ".join(f"{e} x{n}" for e, n in tally.samples.most_common()) or "none"
        problems.append(f"no `{event}` sample (samples seen: {seen})")
    elif tally.window_s <= 0:
        problems.append("its samples span no time")
    if executions == 0:
        problems.append("no execution finished OK inside it")
    if tally.lost:
        problems.append(f"perf lost {tally.lost} events (its ring buffer overflowed)")
    if tally.unparsed:
        problems.append(f"{tally.unparsed} lines of perf script were not understood")
    start_s, deadline_s = run_s
    first, last = tally.first_time_s, tally.last_time_s
    if first is not None and last is not None and not start_s <= first <= last <= deadline_s:
        problems.append(
            f"it is not inside the harness's run ({first:.3f}-{last:.3f} s, "
            f"run {start_s:.3f}-{deadline_s:.3f} s)"
        )
    if problems:
        raise BadWindow(f"the {name} window: " + "; ".join(problems))
