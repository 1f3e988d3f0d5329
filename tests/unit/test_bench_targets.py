"""Issue 16's targets in `python -m bench pool` and `python -m bench e2e`: PASS, MISS and N/A
from made-up results (pure: no engine, no servers, no timing)."""

from __future__ import annotations

from bench.common.stats import LatencyRun, LatencyStats, SystemResult, ThroughputRun
from bench.e2e.report import TargetResult
from bench.e2e.report import evaluate as evaluate_e2e
from bench.pool.targets import evaluate as evaluate_pool


def _latency(ms: float) -> LatencyRun:
    return LatencyRun(stats=LatencyStats.from_ns([int(ms * 1e6)] * 3))


def _tput(threads: int, per_s: float) -> ThroughputRun:
    return ThroughputRun(
        threads=threads,
        completed=int(per_s),
        failures=0,
        elapsed_s=1.0,
        window_s=1.0,
        window_completed=int(per_s),
    )


def _pool_results(
    runtime: str, pool_ms: float, bwrap_ms: float, pool_per_s: float, bare_per_s: float
) -> dict[tuple[str, str], SystemResult]:
    return {
        (runtime, "pool"): SystemResult(
            runtime, "pool", latency=_latency(pool_ms), throughput={2: _tput(2, pool_per_s)}
        ),
        (runtime, "bwrap"): SystemResult(runtime, "bwrap", latency=_latency(bwrap_ms)),
        (runtime, "bare"): SystemResult(runtime, "bare", throughput={2: _tput(2, bare_per_s)}),
    }


def _pool_checks(results: dict[tuple[str, str], SystemResult], runtime: str) -> dict[str, str]:
    checks = evaluate_pool(results, {}, None, [runtime], [2], 8)
    return {c.name: c.verdict for c in checks}


def test_pool_python_needs_1_5_ms_10x_bwrap_and_bare_throughput() -> None:
    verdicts = _pool_checks(_pool_results("python", 1.5, 15.0, 100, 100), "python")
    assert verdicts["Python warm p50"] == "PASS"
    assert verdicts["Python warm p50 vs per-request bwrap"] == "PASS"
    assert verdicts["Python throughput x2 threads vs bare spawn"] == "PASS"
    verdicts = _pool_checks(_pool_results("python", 1.6, 15.0, 95, 100), "python")
    assert verdicts["Python warm p50"] == "MISS"
    assert verdicts["Python warm p50 vs per-request bwrap"] == "MISS"  # 9.4x
    assert verdicts["Python throughput x2 threads vs bare spawn"] == "MISS"  # 0.95x < 1.0x


def test_pool_node_needs_4_ms_8x_bwrap_and_0_9_bare_throughput() -> None:
    verdicts = _pool_checks(_pool_results("javascript", 4.0, 32.0, 90, 100), "javascript")
    assert verdicts["Node warm p50"] == "PASS"
    assert verdicts["Node warm p50 vs per-request bwrap"] == "PASS"
    assert verdicts["Node throughput x2 threads vs bare spawn"] == "PASS"
    verdicts = _pool_checks(_pool_results("javascript", 4.1, 32.0, 89, 100), "javascript")
    assert verdicts["Node warm p50"] == "MISS"
    assert verdicts["Node warm p50 vs per-request bwrap"] == "MISS"
    assert verdicts["Node throughput x2 threads vs bare spawn"] == "MISS"


def _e2e_results(py_ms: list[float], node_ms: float) -> dict[tuple[str, str], TargetResult]:
    return {
        ("python-hello", "daemon"): TargetResult(
            paced=LatencyRun(stats=LatencyStats.from_ns([int(m * 1e6) for m in py_ms])),
            loads={2: _tput(2, 100), 4: _tput(4, 99)},
        ),
        ("python-hello", "bwrap"): TargetResult(paced=_latency(16.0)),
        ("node-hello", "daemon"): TargetResult(
            paced=_latency(node_ms), loads={2: _tput(2, 45), 4: _tput(4, 44)}
        ),
        ("node-hello", "bwrap"): TargetResult(paced=_latency(40.0)),
    }


BARE = {
    ("python-hello", 2): _tput(2, 100),
    ("python-hello", 4): _tput(4, 100),
    ("node-hello", 2): _tput(2, 50),
    ("node-hello", 4): _tput(4, 50),
}


def test_e2e_targets_are_issue_16s() -> None:
    checks = {c.name: c for c in evaluate_e2e(_e2e_results([2.0] * 99 + [5.0], 5.0), BARE)}
    verdicts = {name: c.verdict for name, c in checks.items()}
    assert verdicts["Python hello Execute p50 over gRPC"] == "PASS"
    assert verdicts["Python hello Execute p99 over gRPC"] == "PASS"
    assert verdicts["Python hello p50 vs the same service with bwrap per request"] == "PASS"
    assert verdicts["Node hello Execute p50 over gRPC"] == "PASS"
    assert verdicts["Node hello p50 vs the same service with bwrap per request"] == "PASS"
    assert verdicts["Python hello throughput over gRPC, x2 clients, vs bare spawn"] == "PASS"
    assert verdicts["Python hello throughput over gRPC, x4 clients, vs bare spawn"] == "MISS"
    assert verdicts["Node hello throughput over gRPC, x2 clients, vs bare spawn"] == "PASS"
    assert verdicts["Node hello throughput over gRPC, x4 clients, vs bare spawn"] == "MISS"
    assert checks["Node hello throughput over gRPC, x4 clients, vs bare spawn"].measured == (
        "0.88x (44 vs 50 /s)"
    )

    verdicts = {
        c.name: c.verdict for c in evaluate_e2e(_e2e_results([2.1] * 98 + [6.0] * 2, 5.1), {})
    }
    assert verdicts["Python hello Execute p50 over gRPC"] == "MISS"
    assert verdicts["Python hello Execute p99 over gRPC"] == "MISS"
    assert verdicts["Node hello Execute p50 over gRPC"] == "MISS"
    assert verdicts["Python hello throughput over gRPC, x2 clients, vs bare spawn"] == "N/A"
