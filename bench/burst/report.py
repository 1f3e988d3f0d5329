"""Records and tables of `python -m bench burst` (pure: no servers, no timing)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.common.report import md_table
from bench.common.stats import LatencyStats


@dataclass
class BurstRun:
    """One burst: N executions started at once, each one's completion time from the start."""

    completion_ns: list[int] = field(default_factory=list)  # OK executions only
    failures: int = 0
    first_error: str = ""
    accepted_s: float | None = None  # daemon: the last Submit accepted, from the start
    wall_s: float = 0.0  # the start until the last execution finished (OK or not)

    @property
    def completed(self) -> int:
        return len(self.completion_ns)

    @property
    def per_s(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class BurstResult:
    """Every burst of one system for one runtime, e.g. ("python", "daemon", 16)."""

    runtime: str
    system: str  # "daemon" (Submit, then wait) or "bwrap" (bwrap per request)
    concurrency: int  # daemon: its --max-concurrent; bwrap: spawns at a time
    runs: list[BurstRun] = field(default_factory=list)

    @property
    def completion(self) -> LatencyStats | None:
        """Completion times of every run's OK executions together."""
        return LatencyStats.from_ns([ns for run in self.runs for ns in run.completion_ns])

    @property
    def per_s(self) -> float | None:
        """The median run's executions per second."""
        return statistics.median(r.per_s for r in self.runs) if self.runs else None

    @property
    def wall_s(self) -> float | None:
        return statistics.median(r.wall_s for r in self.runs) if self.runs else None

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.runs)


@dataclass
class BurstReport:
    command: str
    machine: dict[str, str]
    jobs: int
    rounds: int
    warm_workers: int
    tenant: dict[str, int]  # the tenant's quotas as given to `sandboxd tenants add`
    results: list[BurstResult]
    notes: list[str] = field(default_factory=list)


def _f(value: float | None, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if value is not None else "—"


def bwrap_of(report: BurstReport, runtime: str) -> BurstResult | None:
    return next((r for r in report.results if r.runtime == runtime and r.system == "bwrap"), None)


def results_table(report: BurstReport) -> str:
    headers = [
        "runtime",
        "system",
        "completion p50 ms",
        "completion p99 ms",
        "last result s",
        "exec/s",
        "exec/s vs bwrap",
        "notes",
    ]
    rows = []
    for r in report.results:
        stats = r.completion
        bwrap = bwrap_of(report, r.runtime)
        theirs = bwrap.per_s if bwrap is not None and r.system != "bwrap" else None
        mine = r.per_s
        notes = []
        if r.failures:
            notes.append(f"{r.failures} failed")
        accepted = [run.accepted_s for run in r.runs if run.accepted_s is not None]
        if accepted:
            notes.append(f"all Submits accepted after {statistics.median(accepted) * 1e3:.0f} ms")
        system = (
            f"daemon, --max-concurrent {r.concurrency}"
            if r.system == "daemon"
            else f"bwrap per request, {r.concurrency} at a time"
        )
        rows.append(
            [
                r.runtime,
                system,
                _f(stats.p50_ms if stats else None),
                _f(stats.p99_ms if stats else None),
                _f(r.wall_s, 2),
                _f(mine, 0),
                f"{mine / theirs:.2f}x" if mine and theirs else "—",
                "; ".join(notes),
            ]
        )
    return md_table(headers, rows)


def error_notes(report: BurstReport) -> list[str]:
    seen: dict[str, list[str]] = {}
    for r in report.results:
        for run in r.runs:
            if run.first_error:
                where = f"{r.runtime}/{r.system}/{r.concurrency}"
                places = seen.setdefault(run.first_error, [])
                if where not in places:
                    places.append(where)
    return [f"{', '.join(places)}: {error}" for error, places in seen.items()]


def render(report: BurstReport) -> str:
    machine = report.machine
    quotas = ", ".join(f"{k} {v}" for k, v in report.tenant.items())
    lines = [
        f"## Burst: `{report.command}` — {machine.get('date', '')}",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items() if k != "date") + ".",
        "",
        f"A burst is {report.jobs} hello executions started at once; each one's completion "
        "time is from the burst's start until its result is in the benchmark's hands; exec/s is "
        f"the OK executions over the start-to-last-result time. **daemon**: `{report.jobs}` "
        "`Submit` calls issued together (asyncio, four `AsyncClient` channels, no retries), "
        "each followed by a long-poll `wait` for its result, against `sandboxd serve "
        f"--tenants ... --warm-workers {report.warm_workers} --max-concurrent N "
        "--async-max-bytes (the tenant's max_async_bytes)` with one "
        f"tenant allowed the whole burst ({quotas}; a queued hello reserves about 19 MiB with "
        "the default limits); the pool is refilled (a pause) before "
        "each burst. **bwrap**: the same programs run by the per-request bubblewrap baseline "
        "(`bench/common/baselines.py`, `subprocess.run` of `bwrap --unshare-all ... python "
        "-I -S -c` / `node -e`) from a thread pool. "
        f"{report.rounds} burst(s) of each, alternating daemon and bwrap; percentiles are "
        "over every burst's executions, seconds and exec/s are the median burst's. The "
        "daemon lets max(16, 4 x --max-concurrent) long-polls wait at once "
        "(`sandboxd/server.py`); a `GetExecution` beyond that is answered at once with the "
        "state so far and the client asks again after a 0.2 s pause, which counts in the "
        "completion times where the burst outnumbers the waiters.",
        "",
        results_table(report),
        "",
    ]
    notes = [*report.notes, *error_notes(report)]
    if notes:
        lines += ["### Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)
