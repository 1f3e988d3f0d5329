"""The pool's performance targets (docs/benchmarks.md; issue 16's figures for the embedded
pool) and their PASS/MISS verdicts.

A benchmark, not a test: a MISS is reported, never raised. A target whose inputs were
not measured is N/A. "warm" is the paced latency: each call waits, untimed, until the pool
has refilled.
"""

from __future__ import annotations

from bench.common.report import TargetCheck
from bench.common.stats import PoolMemory, RuntimeMemory, SystemResult

MIB = 1024 * 1024

P50_MAX_MS = {"python": 1.5, "javascript": 4.0}
FASTER_THAN_BWRAP = {"python": 10.0, "javascript": 8.0}
# Single-use throughput against bare unsandboxed spawns of the same interpreter, at each
# thread count measured (the targets name 2 and 4).
THROUGHPUT_VS_BARE_MIN = {"python": 1.0, "javascript": 0.9}
WORKER_PSS_VS_BARE_MAX = 1.2
POOL_OWN_PSS_MAX_BYTES = 100 * MIB


def _verdict(value: float | None, ok: bool) -> str:
    if value is None:
        return "N/A"
    return "PASS" if ok else "MISS"


def _p50(result: SystemResult | None) -> float | None:
    if result is None or result.latency is None or result.latency.stats is None:
        return None
    return result.latency.stats.p50_ms


def _tput(result: SystemResult | None, threads: int) -> float | None:
    if result is None or threads not in result.throughput:
        return None
    run = result.throughput[threads]
    return run.per_s if run.completed else None


def evaluate(
    results: dict[tuple[str, str], SystemResult],
    memory: dict[str, RuntimeMemory],
    pool_memory: PoolMemory | None,
    runtimes: list[str],
    thread_counts: list[int],
    warm_workers: int,
) -> list[TargetCheck]:
    checks: list[TargetCheck] = []
    for runtime in runtimes:
        label = "Python" if runtime == "python" else "Node"
        pool = results.get((runtime, "pool"))
        p50 = _p50(pool)
        limit = P50_MAX_MS[runtime]
        checks.append(
            TargetCheck(
                f"{label} warm p50",
                f"<= {limit:g} ms",
                f"{p50:.2f} ms" if p50 is not None else "not measured",
                _verdict(p50, p50 is not None and p50 <= limit),
            )
        )
        bwrap = _p50(results.get((runtime, "bwrap")))
        ratio = bwrap / p50 if p50 and bwrap else None
        faster = FASTER_THAN_BWRAP[runtime]
        checks.append(
            TargetCheck(
                f"{label} warm p50 vs per-request bwrap",
                f">= {faster:g}x faster",
                f"{ratio:.1f}x ({bwrap:.2f} / {p50:.2f} ms)"
                if ratio is not None and bwrap is not None and p50 is not None
                else "not measured",
                _verdict(ratio, ratio is not None and ratio >= faster),
            )
        )
        floor = THROUGHPUT_VS_BARE_MIN[runtime]
        for threads in thread_counts:
            mine = _tput(pool, threads)
            bare = _tput(results.get((runtime, "bare")), threads)
            ratio = mine / bare if mine is not None and bare else None
            checks.append(
                TargetCheck(
                    f"{label} throughput x{threads} threads vs bare spawn",
                    f">= {floor:g}x",
                    f"{ratio:.2f}x ({mine:.0f} vs {bare:.0f} /s)"
                    if ratio is not None
                    else "not measured",
                    _verdict(ratio, ratio is not None and ratio >= floor),
                )
            )
        mem = memory.get(runtime)
        worker = mem.worker_mean_bytes if mem else None
        bare_pss = mem.bare_mean_bytes if mem else None
        ratio = worker / bare_pss if worker is not None and bare_pss else None
        checks.append(
            TargetCheck(
                f"{label} warm worker PSS vs bare idle interpreter",
                f"<= {WORKER_PSS_VS_BARE_MAX:g}x",
                f"{ratio:.2f}x ({worker / MIB:.1f} vs {bare_pss / MIB:.1f} MiB)"
                if ratio is not None and worker is not None and bare_pss is not None
                else "not measured",
                _verdict(ratio, ratio is not None and ratio <= WORKER_PSS_VS_BARE_MAX),
            )
        )
    total = pool_memory.total_bytes if pool_memory else None
    checks.append(
        TargetCheck(
            f"pool's own processes beside {warm_workers} warm workers/runtime",
            f"< {POOL_OWN_PSS_MAX_BYTES // MIB} MiB",
            f"{total / MIB:.1f} MiB" if total is not None else "not measured",
            _verdict(total, total is not None and total < POOL_OWN_PSS_MAX_BYTES),
        )
    )
    return checks
