"""Tables for the terminal and for bench/RESULTS.md (the same Markdown, padded to align)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.common.harness import RAMP_FRACTION
from bench.common.report import TargetCheck, md_table, targets_table
from bench.common.stats import LatencyRun, PoolMemory, RuntimeMemory, SystemResult
from bench.pool.targets import MIB

SYSTEM_TITLES = {
    "pool": "sandboxd pool, warm",
    "pool-b2b": "sandboxd pool, back-to-back",
    "bare": "bare spawn (no isolation)",
    "bwrap": "bwrap per request",
    "unshare": "unshare per request",
}
SYSTEM_ORDER = ("pool", "pool-b2b", "bare", "bwrap", "unshare")


@dataclass
class Report:
    command: str
    machine: dict[str, str]
    runtimes: list[str]
    thread_counts: list[int]
    iterations: int
    duration_s: float
    warm_workers: int
    results: dict[tuple[str, str], SystemResult]
    memory: dict[str, RuntimeMemory]
    pool_memory: PoolMemory | None
    checks: list[TargetCheck]
    notes: list[str] = field(default_factory=list)


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "—"


def _mib(value: float | None) -> str:
    return f"{value / MIB:.1f}" if value is not None else "—"


def _latency_cells(run: LatencyRun | None) -> list[str]:
    if run is None or run.stats is None:
        return ["—", "—"]
    return [_ms(run.stats.p50_ms), _ms(run.stats.p99_ms)]


def _notes_for(result: SystemResult, pool_p50: float | None) -> tuple[str, str]:
    """(the "pool is Nx faster" cell, the notes cell)."""
    notes: list[str] = []
    run = result.back_to_back if result.system == "pool-b2b" else result.latency
    if result.skipped:
        notes.append("not measured (see notes)")
    if run is not None:
        if run.failures:
            notes.append(f"{run.failures}/{run.failures + len_ok(run)} failed")
        if result.system.startswith("pool"):
            notes.append(f"{run.cold_starts} cold")
            if run.engine_wall is not None:
                notes.append(f"engine wall p50 {run.engine_wall.p50_ms:.2f} ms")
            if run.queue_wait is not None and result.system == "pool-b2b":
                notes.append(f"queue wait p50 {run.queue_wait.p50_ms:.2f} ms")
    for threads, tput in sorted(result.throughput.items()):
        if tput.failures:
            notes.append(f"x{threads}: {tput.failures} failed")
        if result.system == "pool" and tput.cold_starts:
            notes.append(f"x{threads}: {tput.cold_starts}/{tput.completed} cold")
    faster = "—"
    if (
        result.system in ("bare", "bwrap", "unshare")
        and pool_p50
        and run is not None
        and run.stats is not None
    ):
        ratio = run.stats.p50_ms / pool_p50
        faster = f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
    return faster, "; ".join(notes)


def len_ok(run: LatencyRun) -> int:
    return run.stats.samples if run.stats is not None else 0


def error_notes(report: Report) -> list[str]:
    """One line per distinct failure, naming where it happened (tables only count them)."""
    seen: dict[str, list[str]] = {}
    for (runtime, system), result in report.results.items():
        where = f"{runtime}/{system}"
        errors = []
        if result.skipped:
            errors.append(f"not measured: {result.skipped}")
        for run in (result.latency, result.back_to_back):
            if run is not None and run.first_error:
                errors.append(run.first_error)
        errors += [t.first_error for t in result.throughput.values() if t.first_error]
        for error in errors:
            places = seen.setdefault(error, [])
            if where not in places:
                places.append(where)
    return [f"{', '.join(places)}: {error}" for error, places in seen.items()]


def runtime_table(report: Report, runtime: str) -> str:
    headers = ["system", "p50 ms", "p99 ms"]
    headers += [f"x{t} exec/s" for t in report.thread_counts]
    headers += ["pool p50 vs this", "notes"]
    pool = report.results.get((runtime, "pool"))
    pool_p50 = (
        pool.latency.stats.p50_ms
        if pool and pool.latency is not None and pool.latency.stats is not None
        else None
    )
    rows = []
    for system in SYSTEM_ORDER:
        result = report.results.get((runtime, system))
        if result is None:
            continue
        run = result.back_to_back if system == "pool-b2b" else result.latency
        cells = [SYSTEM_TITLES[system], *_latency_cells(run)]
        for threads in report.thread_counts:
            tput = result.throughput.get(threads)
            cells.append(f"{tput.per_s:.0f}" if tput is not None and tput.completed else "—")
        faster, notes = _notes_for(result, pool_p50)
        rows.append([*cells, faster, notes])
    return md_table(headers, rows)


def throughput_ratio_line(report: Report, runtime: str) -> str:
    pool = report.results.get((runtime, "pool"))
    bare = report.results.get((runtime, "bare"))
    parts = []
    for threads in report.thread_counts:
        mine = pool.throughput.get(threads) if pool else None
        theirs = bare.throughput.get(threads) if bare else None
        if mine and theirs and mine.completed and theirs.completed:
            parts.append(f"x{threads} threads {mine.per_s / theirs.per_s:.2f}x")
        else:
            parts.append(f"x{threads} threads —")
    return "Throughput, pool / bare spawn: " + ", ".join(parts)


def memory_table(report: Report) -> str:
    rows = []
    for runtime in report.runtimes:
        mem = report.memory.get(runtime)
        if mem is None:
            continue
        worker = mem.worker_mean_bytes
        bare = mem.bare_mean_bytes
        ratio = f"{worker / bare:.2f}x" if worker is not None and bare else "—"
        procs = (
            f"{mem.worker_processes / len(mem.worker_pss_bytes):.1f}"
            if mem.worker_pss_bytes
            else "—"
        )
        rows.append(
            [
                runtime,
                f"{_mib(worker)} (n={len(mem.worker_pss_bytes)})",
                procs,
                f"{_mib(bare)} (n={len(mem.bare_idle_pss_bytes)})",
                ratio,
            ]
        )
    headers = [
        "runtime",
        "warm worker PSS MiB (mean)",
        "procs/worker",
        "bare idle PSS MiB (mean)",
        "worker / bare",
    ]
    return md_table(headers, rows)


def pool_memory_line(pool_memory: PoolMemory | None) -> str:
    if pool_memory is None:
        return "Pool's own processes: not measured."
    warm = ", ".join(f"{k} {v}" for k, v in sorted(pool_memory.warm_workers_per_runtime.items()))
    return (
        f"Pool's own processes (warm workers: {warm}): caller "
        f"{_mib(pool_memory.caller_pss_bytes)} MiB + zygote {_mib(pool_memory.zygote_pss_bytes)} "
        f"MiB + {pool_memory.helper_count} other helper(s) {_mib(pool_memory.helpers_pss_bytes)} "
        f"MiB = **{_mib(pool_memory.total_bytes)} MiB** PSS. Worker pids from: "
        f"{pool_memory.source}."
    )


def render(report: Report) -> str:
    machine = report.machine
    lines = [
        f"## `{report.command}` — {machine.get('date', '')}",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items() if k not in ("date",)) + ".",
        "",
        f"Settings: {report.iterations} sequential iterations per latency row (after warm-up); "
        "throughput = sustained OK executions/s with "
        f"{', '.join(map(str, report.thread_counts))} threads calling back to back for "
        f"{report.duration_s:g} s (the first {RAMP_FRACTION:.0%} is ramp-up, not counted); pool with {report.warm_workers} warm workers per runtime. "
        "'warm' waits (untimed) until the pool is fully replenished before each call; "
        "'back-to-back' does not. Baselines: clean env (PATH only), `python -I -S`, "
        "stdin /dev/null, stdout captured and checked.",
        "",
    ]
    for runtime in report.runtimes:
        lines += [f"### {runtime}", "", runtime_table(report, runtime), ""]
        lines += [throughput_ratio_line(report, runtime), ""]
    lines += ["### Memory (PSS)", "", memory_table(report), ""]
    lines += [pool_memory_line(report.pool_memory), ""]
    lines += ["### Targets", "", targets_table(report.checks), ""]
    notes = [*report.notes, *error_notes(report)]
    if notes:
        lines += ["### Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)
