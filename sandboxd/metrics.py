"""Prometheus metrics (docs/operations.md, "Metrics and logs"), in their own registry, served on a separate HTTP port.

Per-tenant labels only when the operator enables them (`--metrics-tenant-labels`): tenants
are unbounded, and a label per tenant multiplies every series."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sandboxd_pool import Outcome, RuntimeHealth

# Executions range from a millisecond (a warm hello) to minutes (the wall-time ceiling).
_DURATION_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
_MEMORY_BUCKETS_BYTES = tuple(float(2**n) for n in range(20, 33))  # 1 MiB .. 4 GiB


class Metrics:
    def __init__(self, *, tenant_labels: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.tenant_labels = tenant_labels
        r = self.registry
        labels = ("runtime", "verdict", "tenant") if tenant_labels else ("runtime", "verdict")
        self.executions = Counter(
            "sandboxd_executions", "Executions finished, by verdict.", labels, registry=r
        )
        self.duration = Histogram(
            "sandboxd_execution_duration_seconds",
            "Wall time of the program, from start to exit.",
            ("runtime",),
            buckets=_DURATION_BUCKETS_S,
            registry=r,
        )
        self.queue_wait = Histogram(
            "sandboxd_queue_wait_seconds",
            "Time a request waited for a ready worker, an async one counted from its Submit "
            "(the signal to scale on).",
            ("runtime",),
            buckets=_DURATION_BUCKETS_S,
            registry=r,
        )
        self.ready_workers = Gauge(
            "sandboxd_pool_ready_workers",
            "Warm workers ready to take a request.",
            ("runtime",),
            registry=r,
        )
        self.runtime_healthy = Gauge(
            "sandboxd_runtime_healthy",
            "1 when the runtime's workers boot, else 0.",
            ("runtime",),
            registry=r,
        )
        self.environment_ready_workers = Gauge(
            "sandboxd_environment_ready_workers",
            "Warm workers of an environment ready to take a request.",
            ("environment",),
            registry=r,
        )
        self.environment_healthy = Gauge(
            "sandboxd_environment_healthy",
            "1 when the environment's workers boot (its preload list loads), else 0.",
            ("environment",),
            registry=r,
        )
        self.worker_boot = Histogram(
            "sandboxd_worker_boot_seconds",
            "Boot time (jail + interpreter warm-up) of the workers that ran executions.",
            ("runtime",),
            buckets=_DURATION_BUCKETS_S,
            registry=r,
        )
        self.cold_starts = Counter(
            "sandboxd_cold_starts",
            "Requests that found no warm worker ready.",
            ("runtime",),
            registry=r,
        )
        self.peak_memory = Histogram(
            "sandboxd_execution_peak_memory_bytes",
            "Peak memory of an execution.",
            ("runtime",),
            buckets=_MEMORY_BUCKETS_BYTES,
            registry=r,
        )
        self.boot_failures = Counter(
            "sandboxd_worker_boot_failures",
            "Workers that failed to boot.",
            ("runtime",),
            registry=r,
        )
        self.quota_rejections = Counter(
            "sandboxd_quota_rejections",
            "Requests rejected with RESOURCE_EXHAUSTED, by quota.",
            ("quota",),
            registry=r,
        )
        self.rejections = Counter(
            "sandboxd_requests_rejected",
            "Requests that ended with a gRPC error status, by status code.",
            ("code",),
            registry=r,
        )
        self.in_flight = Gauge(
            "sandboxd_executions_in_flight", "Executions running now.", registry=r
        )
        self.async_queued = Gauge(
            "sandboxd_async_jobs_queued",
            "Asynchronous executions (Submit) waiting to start on this node.",
            registry=r,
        )
        self.open_calls = Gauge(
            "sandboxd_open_calls",
            "Calls admitted and not finished: of tenants (kind=tenant) and health and "
            "reflection calls (kind=public).",
            ("kind",),
            registry=r,
        )
        egress_labels = ("decision", "tenant") if tenant_labels else ("decision",)
        self.egress_connections = Counter(
            "sandboxd_egress_connections",
            "Connections through the egress proxy, by decision (allowed, refused).",
            egress_labels,
            registry=r,
        )
        self.egress_bytes = Counter(
            "sandboxd_egress_bytes",
            "Bytes the egress proxy relayed, by direction (sent towards destinations, received "
            "back) and decision.",
            ("direction", *egress_labels),
            registry=r,
        )
        self._boot_failures_seen: dict[str, int] = {}

    def record(self, runtime: str, tenant: str, outcome: Outcome) -> None:
        labels: dict[str, str] = {"runtime": runtime, "verdict": outcome.verdict.value}
        if self.tenant_labels:
            labels["tenant"] = tenant
        self.executions.labels(**labels).inc()
        self.duration.labels(runtime).observe(outcome.usage.wall_time_us / 1e6)
        self.queue_wait.labels(runtime).observe(outcome.queue_wait_us / 1e6)
        self.peak_memory.labels(runtime).observe(outcome.usage.peak_memory_bytes)
        if outcome.worker_boot_us:
            self.worker_boot.labels(runtime).observe(outcome.worker_boot_us / 1e6)
        if outcome.cold_start:
            self.cold_starts.labels(runtime).inc()
        for entry in outcome.egress:
            egress: dict[str, str] = {"decision": "allowed" if entry.allowed else "refused"}
            if self.tenant_labels:
                egress["tenant"] = tenant
            self.egress_connections.labels(**egress).inc(entry.connections)
            self.egress_bytes.labels(direction="sent", **egress).inc(entry.sent_bytes)
            self.egress_bytes.labels(direction="received", **egress).inc(entry.received_bytes)

    def observe_pool(self, health: Mapping[Any, RuntimeHealth]) -> None:
        """Gauges from a pool health snapshot; boot failures counted from the streaks seen."""
        for h in health.values():
            name = h.runtime.value
            self.ready_workers.labels(name).set(h.ready_workers)
            self.runtime_healthy.labels(name).set(1 if h.healthy else 0)
            seen = self._boot_failures_seen.get(name, 0)
            streak = h.consecutive_boot_failures
            if streak > seen:
                self.boot_failures.labels(name).inc(streak - seen)
            self._boot_failures_seen[name] = streak

    def observe_environments(self, health: Mapping[str, RuntimeHealth]) -> None:
        for name, h in health.items():
            self.environment_ready_workers.labels(name).set(h.ready_workers)
            self.environment_healthy.labels(name).set(1 if h.healthy else 0)

    def serve(self, host: str, port: int) -> tuple[Any, int]:
        """Start the HTTP endpoint; returns (server, bound port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server, int(server.server_port)
