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

PYTHON_P50_MAX_MS = 2.0
PYTHON_P99_MAX_MS = 6.0
PYTHON_FASTER_THAN_BWRAP = 8.0
NODE_P50_MAX_MS = 4.0


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


def evaluate(results: dict[tuple[str, str], TargetResult]) -> list[TargetCheck]:
    """The e2e targets (docs/benchmarks.md), on paced sequential latency (a call to an idle warm pool)."""

    def paced(scenario: str, target: str) -> LatencyRun | None:
        r = results.get((scenario, target))
        return r.paced if r is not None else None

    checks = []
    py_p50 = _p(paced("python-hello", "daemon"), "p50_ms")
    py_p99 = _p(paced("python-hello", "daemon"), "p99_ms")
    bw_p50 = _p(paced("python-hello", "bwrap"), "p50_ms")
    node_p50 = _p(paced("node-hello", "daemon"), "p50_ms")
    ratio = bw_p50 / py_p50 if bw_p50 is not None and py_p50 else None
    checks.append(
        TargetCheck(
            "Python hello Execute p50 over gRPC",
            f"<= {PYTHON_P50_MAX_MS:g} ms",
            _fmt(py_p50),
            _verdict(None if py_p50 is None else py_p50 <= PYTHON_P50_MAX_MS),
        )
    )
    checks.append(
        TargetCheck(
            "Python hello Execute p99 over gRPC",
            f"<= {PYTHON_P99_MAX_MS:g} ms",
            _fmt(py_p99),
            _verdict(None if py_p99 is None else py_p99 <= PYTHON_P99_MAX_MS),
        )
    )
    checks.append(
        TargetCheck(
            "Python hello p50 vs the same service with bwrap per request",
            f">= {PYTHON_FASTER_THAN_BWRAP:g}x faster",
            f"{ratio:.1f}x ({bw_p50:.2f} / {py_p50:.2f} ms)"
            if ratio is not None and bw_p50 is not None and py_p50 is not None
            else "not measured",
            _verdict(None if ratio is None else ratio >= PYTHON_FASTER_THAN_BWRAP),
        )
    )
    checks.append(
        TargetCheck(
            "Node hello Execute p50 over gRPC",
            f"<= {NODE_P50_MAX_MS:g} ms",
            _fmt(node_p50),
            _verdict(None if node_p50 is None else node_p50 <= NODE_P50_MAX_MS),
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
            run = runs[t]
            lat = run.latency if run is not None else None
            p50s[t] = lat.p50_ms if lat is not None else None
            tputs[t] = run.per_s if run is not None and run.completed else None
            cells += [
                _ms(p50s[t]),
                _ms(lat.p99_ms if lat is not None else None),
                f"{tputs[t]:.0f}" if tputs[t] is not None else "—",
            ]
            if run is not None:
                notes += _load_notes(
                    t, run.failures, run.cold_starts, run.completed, run.first_error
                )
        cells += [
            _ratio(p50s["bwrap"], p50s["daemon"]),
            _ratio(tputs["daemon"], tputs["bwrap"]),
            "; ".join(notes),
        ]
        rows.append(cells)
    return md_table(headers, rows)


def floor_line(report: E2EReport) -> str:
    parts = []
    for t in TARGETS:
        run = report.floor.get(t)
        if run is None or run.stats is None:
            continue
        parts.append(f"{t} p50 {run.stats.p50_ms:.2f} ms, p99 {run.stats.p99_ms:.2f} ms")
    if not parts:
        return "gRPC round-trip floor: not measured."
    return (
        "gRPC round-trip floor (Execute with 65 labels, rejected INVALID_ARGUMENT by the "
        "servicer before any engine work; same client, sequential): " + "; ".join(parts) + "."
    )


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
