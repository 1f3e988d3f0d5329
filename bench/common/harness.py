"""Timing loops shared by the baselines and the pool.

A system under test is a `run_once() -> Attempt` callable. Latency is measured
sequentially, one call at a time, after a warm-up; throughput is measured with N threads
calling `run_once` back to back until a deadline, counting the calls that finished OK.
Throughput is the sustained rate: completions in the window after a ramp-up (the first
`RAMP_FRACTION` of the run, where a pool drains the workers it had warmed beforehand)
up to the deadline, divided by the window's length.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bench.common.stats import Attempt, LatencyRun, LatencyStats, ThroughputRun

RunOnce = Callable[[], Attempt]
RAMP_FRACTION = 0.2


def measure_latency(
    run_once: RunOnce,
    iterations: int,
    warmup: int,
    before_each: Callable[[], None] | None = None,
) -> LatencyRun:
    """Sequential latency of `iterations` calls after `warmup` untimed ones.

    `before_each` runs untimed before every call (the pool uses it to wait until it is
    fully replenished, so each timed call is a dispatch to an idle warm worker).
    """
    for _ in range(warmup):
        if before_each:
            before_each()
        run_once()
    samples_ns: list[int] = []
    engine_wall_ns: list[int] = []
    queue_wait_ns: list[int] = []
    failures = 0
    cold_starts = 0
    first_error = ""
    for _ in range(iterations):
        if before_each:
            before_each()
        start = time.perf_counter_ns()
        attempt = run_once()
        elapsed = time.perf_counter_ns() - start
        cold_starts += attempt.cold_start
        if not attempt.ok:
            failures += 1
            first_error = first_error or attempt.error
            continue
        samples_ns.append(elapsed)
        if attempt.engine_wall_us is not None:
            engine_wall_ns.append(attempt.engine_wall_us * 1000)
        if attempt.queue_wait_us is not None:
            queue_wait_ns.append(attempt.queue_wait_us * 1000)
    return LatencyRun(
        stats=LatencyStats.from_ns(samples_ns),
        failures=failures,
        cold_starts=cold_starts,
        first_error=first_error,
        engine_wall=LatencyStats.from_ns(engine_wall_ns),
        queue_wait=LatencyStats.from_ns(queue_wait_ns),
    )


def measure_throughput(run_once: RunOnce, threads: int, duration_s: float) -> ThroughputRun:
    """Executions per second with `threads` callers running back to back for `duration_s`."""
    lock = threading.Lock()
    start_gate = threading.Barrier(threads + 1)
    latencies_ns: list[int] = []
    finished_at: list[float] = []
    counts = {"ok": 0, "failed": 0, "cold": 0}
    errors: list[str] = []
    deadline = 0.0

    def caller() -> None:
        start_gate.wait()
        while time.perf_counter() < deadline:
            start = time.perf_counter_ns()
            attempt = run_once()
            elapsed = time.perf_counter_ns() - start
            with lock:
                counts["cold"] += attempt.cold_start
                if attempt.ok:
                    counts["ok"] += 1
                    latencies_ns.append(elapsed)
                    finished_at.append(time.perf_counter())
                else:
                    counts["failed"] += 1
                    if not errors:
                        errors.append(attempt.error)

    workers = [threading.Thread(target=caller, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    began = time.perf_counter()
    deadline = began + duration_s
    start_gate.wait()
    for worker in workers:
        worker.join()
    elapsed_s = time.perf_counter() - began
    window_start = began + duration_s * RAMP_FRACTION
    return ThroughputRun(
        threads=threads,
        completed=counts["ok"],
        failures=counts["failed"],
        elapsed_s=elapsed_s,
        window_s=deadline - window_start,
        window_completed=sum(window_start <= t <= deadline for t in finished_at),
        cold_starts=counts["cold"],
        first_error=errors[0] if errors else "",
        latency=LatencyStats.from_ns(latencies_ns),
    )
