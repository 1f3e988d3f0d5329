"""Percentiles and the records a measurement produces. Times carry their unit in the name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    fraction = rank - low
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction)


@dataclass(frozen=True)
class LatencyStats:
    samples: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> LatencyStats | None:
        if not samples_ns:
            return None
        ms = sorted(ns / 1e6 for ns in samples_ns)
        return cls(
            samples=len(ms),
            p50_ms=percentile(ms, 50),
            p99_ms=percentile(ms, 99),
            mean_ms=sum(ms) / len(ms),
            min_ms=ms[0],
            max_ms=ms[-1],
        )


@dataclass(frozen=True)
class Attempt:
    """One execution as the harness saw it."""

    ok: bool
    cold_start: bool = False
    error: str = ""  # why it was not ok (first line only)
    engine_wall_us: int | None = None  # what the engine reported, when there is an engine
    queue_wait_us: int | None = None


@dataclass
class LatencyRun:
    """A sequential latency measurement."""

    stats: LatencyStats | None
    failures: int = 0
    cold_starts: int = 0
    first_error: str = ""
    engine_wall: LatencyStats | None = None  # engine-reported wall time of the same calls
    queue_wait: LatencyStats | None = None


@dataclass
class ThroughputRun:
    threads: int
    completed: int
    failures: int
    elapsed_s: float  # start until the last in-flight call returned
    window_s: float = 0.0  # the sustained window: after the ramp-up, up to the deadline
    window_completed: int = 0  # OK calls that finished inside the window
    cold_starts: int = 0
    first_error: str = ""
    latency: LatencyStats | None = None  # per-call latency under this load

    @property
    def per_s(self) -> float:
        """Sustained executions/s (the whole run's average if the window saw none)."""
        if self.window_completed and self.window_s > 0:
            return self.window_completed / self.window_s
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class SystemResult:
    """Everything measured for one (runtime, system) pair, e.g. ("python", "bwrap")."""

    runtime: str
    system: str
    latency: LatencyRun | None = None
    back_to_back: LatencyRun | None = None  # pool only: sequential calls without waiting
    throughput: dict[int, ThroughputRun] = field(default_factory=dict)
    skipped: str = ""  # why this system was not measured at all


@dataclass
class RuntimeMemory:
    runtime: str
    bare_idle_pss_bytes: list[int] = field(default_factory=list)
    worker_pss_bytes: list[int] = field(default_factory=list)  # one per warm worker tree
    worker_processes: int = 0  # processes across all measured worker trees

    @property
    def bare_mean_bytes(self) -> float | None:
        values = self.bare_idle_pss_bytes
        return sum(values) / len(values) if values else None

    @property
    def worker_mean_bytes(self) -> float | None:
        values = self.worker_pss_bytes
        return sum(values) / len(values) if values else None


@dataclass
class PoolMemory:
    caller_pss_bytes: int = 0
    zygote_pss_bytes: int = 0
    helpers_pss_bytes: int = 0  # other non-worker descendants of the caller (supervisors, ...)
    helper_count: int = 0
    warm_workers_per_runtime: dict[str, int] = field(default_factory=dict)
    source: str = ""  # how the worker pids were found

    @property
    def total_bytes(self) -> int:
        return self.caller_pss_bytes + self.zygote_pss_bytes + self.helpers_pss_bytes
