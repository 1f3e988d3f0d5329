"""Records, targets and tables of `python -m bench e2e` (pure: no servers, no timing)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.common.harness import RAMP_FRACTION
from bench.common.report import TargetCheck, md_table, targets_table
from bench.common.stats import LatencyRun, ThroughputRun

TARGETS = ("daemon", "bwrap")
TARGET_TITLES = {
    "daemon": "sandboxd serve (warm pool)",
    "bwrap": "same servicer, bwrap per request",
}

# Issue 16's figures for hello over gRPC, paced: (scenario, label, p50 ms, p99 ms or None,
# times faster than the same service with bwrap per request).
LATENCY_TARGETS = (
    ("python-hello", "Python", 2.0, 5.0, 8.0),
    ("node-hello", "Node", 5.0, None, 8.0),
)
# Single-use throughput over gRPC against bare unsandboxed spawns of the same interpreter
# (bench.common.baselines "bare", same thread count, no gRPC), at these client threads.
THROUGHPUT_TARGETS = (("python-hello", "Python", 1.0), ("node-hello", "Node", 0.9))
THROUGHPUT_THREADS = (2, 4)


@dataclass
class TargetResult:
    """One scenario on one target: paced sequential latency and each concurrency level."""

    paced: LatencyRun | None = None
    loads: dict[int, ThroughputRun] = field(default_factory=dict)
    skipped: str = ""


@dataclass
class EchoResult:
    """1 MB unary echo through a tiny generic handler, sync vs aio server (optional)."""

    payload_bytes: int
    runs: dict[str, LatencyRun] = field(default_factory=dict)  # "sync" / "aio"


@dataclass
class E2EReport:
    command: str
    machine: dict[str, str]
    scenarios: list[tuple[str, str]]  # (key, title) in order
    thread_counts: list[int]
    iterations: int
    duration_s: float
    pause_ms: dict[str, float]  # runtime -> untimed pause before each paced call
    warm_workers: int
    results: dict[tuple[str, str], TargetResult]  # (scenario key, target)
    floor: dict[str, LatencyRun] = field(default_factory=dict)  # target -> INVALID_ARGUMENT RPC
    # The same with an untimed pause of floor_pause_ms before each call (the servers idle
    # between calls, as in x1 paced).
    floor_paced: dict[str, LatencyRun] = field(default_factory=dict)
    floor_pause_ms: float = 0.0
    # (scenario key, threads) -> bare spawns of the hello program, no gRPC (THROUGHPUT_THREADS)
    bare: dict[tuple[str, int], ThroughputRun] = field(default_factory=dict)
    echo: list[EchoResult] = field(default_factory=list)
    checks: list[TargetCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _p(run: LatencyRun | None, which: str) -> float | None:
    if run is None or run.stats is None:
        return None
    return float(getattr(run.stats, which))


def _verdict(ok: bool | None) -> str:
    return "N/A" if ok is None else ("PASS" if ok else "MISS")


def _fmt(value: float | None, unit: str = " ms") -> str:
    return f"{value:.2f}{unit}" if value is not None else "not measured"


def _per_s(run: ThroughputRun | None) -> float | None:
    return run.per_s if run is not None and run.completed else None


def evaluate(
    results: dict[tuple[str, str], TargetResult],
    bare: dict[tuple[str, int], ThroughputRun] | None = None,
) -> list[TargetCheck]:
    """The e2e targets (docs/benchmarks.md): latency on paced sequential calls (a call to an
    idle warm pool), throughput of the daemon's xN load against bare spawns at N threads."""

    def paced(scenario: str, target: str) -> LatencyRun | None:
        r = results.get((scenario, target))
        return r.paced if r is not None else None

    checks = []
    for scenario, label, p50_max, p99_max, faster in LATENCY_TARGETS:
        p50 = _p(paced(scenario, "daemon"), "p50_ms")
        checks.append(
            TargetCheck(
                f"{label} hello Execute p50 over gRPC",
                f"<= {p50_max:g} ms",
                _fmt(p50),
                _verdict(None if p50 is None else p50 <= p50_max),
            )
        )
        if p99_max is not None:
            p99 = _p(paced(scenario, "daemon"), "p99_ms")
            checks.append(
                TargetCheck(
                    f"{label} hello Execute p99 over gRPC",
                    f"<= {p99_max:g} ms",
                    _fmt(p99),
                    _verdict(None if p99 is None else p99 <= p99_max),
                )
            )
        bw_p50 = _p(paced(scenario, "bwrap"), "p50_ms")
        ratio = bw_p50 / p50 if bw_p50 is not None and p50 else None
        checks.append(
            TargetCheck(
                f"{label} hello p50 vs the same service with bwrap per request",
                f">= {faster:g}x faster",
                f"{ratio:.1f}x ({bw_p50:.2f} / {p50:.2f} ms)"
                if ratio is not None and bw_p50 is not None and p50 is not None
                else "not measured",
                _verdict(None if ratio is None else ratio >= faster),
            )
        )
    for scenario, label, floor in THROUGHPUT_TARGETS:
        for threads in THROUGHPUT_THREADS:
            r = results.get((scenario, "daemon"))
            mine = _per_s(r.loads.get(threads) if r is not None else None)
            theirs = _per_s((bare or {}).get((scenario, threads)))
            tput_ratio = mine / theirs if mine is not None and theirs else None
            checks.append(
                TargetCheck(
                    f"{label} hello throughput over gRPC, x{threads} clients, vs bare spawn",
                    f">= {floor:g}x",
                    f"{tput_ratio:.2f}x ({mine:.0f} vs {theirs:.0f} /s)"
                    if tput_ratio is not None and mine is not None and theirs is not None
                    else "not measured",
                    _verdict(None if tput_ratio is None else tput_ratio >= floor),
                )
            )
    return checks


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "—"


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or not den:
        return "—"
    return f"{num / den:.1f}x"


def _load_notes(target: str, failures: int, cold: int, calls: int, error: str) -> list[str]:
    notes = []
    if failures:
        notes.append(f"{target}: {failures} failed")
    if target == "daemon" and cold:
        notes.append(f"daemon: {cold}/{calls} cold")
    return notes


def scenario_table(report: E2EReport, scenario: str) -> str:
    headers = [
        "load",
        "daemon p50 ms",
        "daemon p99 ms",
        "daemon exec/s",
        "bwrap p50 ms",
        "bwrap p99 ms",
        "bwrap exec/s",
        "p50 bwrap/daemon",
        "exec/s daemon/bwrap",
        "notes",
    ]
    results = {t: report.results.get((scenario, t)) for t in TARGETS}
    rows = []
    paced = {t: (r.paced if r else None) for t, r in results.items()}
    notes: list[str] = []
    for t in TARGETS:
        run = paced[t]
        if run is not None:
            calls = (run.stats.samples if run.stats else 0) + run.failures
            notes += _load_notes(t, run.failures, run.cold_starts, calls, run.first_error)
            if t == "daemon" and run.engine_wall is not None:
                notes.append(f"engine wall p50 {run.engine_wall.p50_ms:.2f} ms")
    d50, b50 = _p(paced["daemon"], "p50_ms"), _p(paced["bwrap"], "p50_ms")
    rows.append(
        [
            "x1 paced",
            _ms(d50),
            _ms(_p(paced["daemon"], "p99_ms")),
            "—",
            _ms(b50),
            _ms(_p(paced["bwrap"], "p99_ms")),
            "—",
            _ratio(b50, d50),
            "—",
            "; ".join(notes),
        ]
    )
    for threads in report.thread_counts:
        runs = {t: (r.loads.get(threads) if r else None) for t, r in results.items()}
        cells = [f"x{threads}"]
        p50s: dict[str, float | None] = {}
        tputs: dict[str, float | None] = {}
        notes = []
        for t in TARGETS:
            load = runs[t]
            lat = load.latency if load is not None else None
            p50s[t] = lat.p50_ms if lat is not None else None
            tputs[t] = load.per_s if load is not None and load.completed else None
            cells += [
                _ms(p50s[t]),
                _ms(lat.p99_ms if lat is not None else None),
                f"{tputs[t]:.0f}" if tputs[t] is not None else "—",
            ]
            if load is not None:
                notes += _load_notes(
                    t, load.failures, load.cold_starts, load.completed, load.first_error
                )
        cells += [
            _ratio(p50s["bwrap"], p50s["daemon"]),
            _ratio(tputs["daemon"], tputs["bwrap"]),
            "; ".join(notes),
        ]
        rows.append(cells)
    return md_table(headers, rows)


def bare_line(report: E2EReport, scenario: str) -> str:
    """The bare spawns measured beside a scenario, and the daemon's throughput against them."""
    parts = []
    for (key, threads), run in sorted(report.bare.items()):
        if key != scenario:
            continue
        theirs = _per_s(run)
        r = report.results.get((scenario, "daemon"))
        mine = _per_s(r.loads.get(threads) if r is not None else None)
        ratio = f", the daemon's x{threads} {mine / theirs:.2f}x of it" if mine and theirs else ""
        fails = f", {run.failures} failed" if run.failures else ""
        parts.append(f"x{threads} {theirs or 0:.0f}/s{ratio}{fails}")
    if not parts:
        return ""
    return (
        "Bare spawns of the same interpreter (no isolation, no gRPC; `subprocess.run` of the "
        "hello program from the benchmark's threads, back to back): " + "; ".join(parts) + "."
    )


def _floor_parts(runs: dict[str, LatencyRun]) -> list[str]:
    parts = []
    for t in TARGETS:
        run = runs.get(t)
        if run is None or run.stats is None:
            continue
        parts.append(f"{t} p50 {run.stats.p50_ms:.2f} ms, p99 {run.stats.p99_ms:.2f} ms")
    return parts


def floor_line(report: E2EReport) -> str:
    parts = _floor_parts(report.floor)
    if not parts:
        return "gRPC round-trip floor: not measured."
    line = (
        "gRPC round-trip floor (Execute with 65 labels, rejected INVALID_ARGUMENT by the "
        "servicer before any engine work; same client, sequential): back to back "
        + "; ".join(parts)
    )
    paced = _floor_parts(report.floor_paced)
    if paced:
        line += (
            f"; paced (a {report.floor_pause_ms:g} ms pause before each, so every "
            "thread on the way has gone idle): " + "; ".join(paced)
        )
    return line + "."


def echo_table(echo: list[EchoResult]) -> str:
    rows = []
    for e in echo:
        sync, aio = e.runs.get("sync"), e.runs.get("aio")
        s50, a50 = _p(sync, "p50_ms"), _p(aio, "p50_ms")
        rows.append(
            [
                f"{e.payload_bytes:,} B",
                _ms(s50),
                _ms(_p(sync, "p99_ms")),
                _ms(a50),
                _ms(_p(aio, "p99_ms")),
                _ratio(a50, s50),
            ]
        )
    headers = ["payload", "sync p50 ms", "sync p99 ms", "aio p50 ms", "aio p99 ms", "aio/sync p50"]
    return md_table(headers, rows)


def error_notes(report: E2EReport) -> list[str]:
    seen: dict[str, list[str]] = {}
    for (scenario, target), result in report.results.items():
        where = f"{scenario}/{target}"
        errors = []
        if result.skipped:
            errors.append(f"not measured: {result.skipped}")
        if result.paced is not None and result.paced.first_error:
            errors.append(result.paced.first_error)
        errors += [r.first_error for r in result.loads.values() if r.first_error]
        for error in errors:
            places = seen.setdefault(error, [])
            if where not in places:
                places.append(where)
    return [f"{', '.join(places)}: {error}" for error, places in seen.items()]


def render(report: E2EReport) -> str:
    machine = report.machine
    pauses = ", ".join(f"{rt} {ms:g} ms" for rt, ms in report.pause_ms.items())
    lines = [
        f"## End to end over gRPC: `{report.command}` — {machine.get('date', '')}",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items() if k != "date") + ".",
        "",
        "Targets: **daemon** = `python -m sandboxd serve --listen 127.0.0.1:0 "
        f"--warm-workers {report.warm_workers}` (subprocess, default logging); **bwrap** = the "
        "same `SandboxServicer` on the same synchronous `grpc.server` setup in its own "
        "subprocess (`python -m bench.e2e.bwrap_server`), whose engine runs every request in a "
        "fresh `bwrap --unshare-all ... python -I -S -c` / `node -e`. Latency is the "
        "client-observed `Client.execute()` round trip (request built, RPC, response converted, "
        "stdout checked byte for byte). Each client thread has its own `sandboxd_client.Client` "
        "(own channel, `grpc.use_local_subchannel_pool` so its own TCP connection), no retries; "
        "the client threads run in the benchmark process on the same CPUs as the servers.",
        "",
        f"Settings: 'x1 paced' = {report.iterations} sequential calls per target after warm-up, "
        f"with an untimed pause before each ({pauses}) so the pool has refilled: a dispatch to "
        f"an idle warm worker, the number the targets are about. 'xN' = N threads calling back "
        f"to back for {report.duration_s:g} s; exec/s counts OK calls after the first "
        f"{RAMP_FRACTION:.0%} (ramp-up), p50/p99 are over all its calls. The two targets are "
        "interleaved: paced latency in alternating rounds, then per load level one after the "
        "other (alternating which goes first).",
        "",
    ]
    for key, title in report.scenarios:
        lines += [f"### {title}", "", scenario_table(report, key), ""]
        bare = bare_line(report, key)
        if bare:
            lines += [bare, ""]
    lines += [floor_line(report), ""]
    if report.echo:
        lines += [
            "### Synchronous vs asyncio gRPC server, unary echo",
            "",
            "A generic bytes-in/bytes-out handler (no protobuf), server in a subprocess "
            "(`python -m bench.e2e.echo`), sync client; sequential calls, sync and aio "
            "interleaved in rounds.",
            "",
            echo_table(report.echo),
            "",
        ]
    lines += ["### Targets", "", targets_table(report.checks), ""]
    notes = [*report.notes, *error_notes(report)]
    if notes:
        lines += ["### Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)
