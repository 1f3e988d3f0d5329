"""Every metric the Grafana dashboard and the autoscaler's adapter rule query is one a real
daemon exports, with the labels the queries group by.

Two real `sandboxd serve` processes (port 0, as the e2e tests start them):
  A  both runtimes, a tenant limited to one execution at once and one with eight: an execution in each runtime
     (execution, duration, queue wait, peak memory, worker boot histograms; ready workers),
     a burst of concurrent ones (cold starts), an async execution holding the tenant's slot
     while a synchronous one is refused (quota rejections, rejected calls)
  B  JavaScript with /bin/false as Node: its workers fail to boot (boot failures)
Their /metrics are scraped and compared with the names the queries use, exactly as
Prometheus would store them (`sandboxd_executions_total`, `..._bucket`), so a query for a
name the daemon does not export, or for a histogram without its suffix, fails here.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from e2e.daemon import Daemon, start, tenants_file
from prometheus_client.parser import text_string_to_metric_families

from sandboxd_client import Client, ExecutionState, QuotaExceeded, Verdict

from .manifests import adapter_queries, adapter_rules, dashboard, dashboard_queries
from .promql import grafana_query_metrics, grouping_labels

# Labels Prometheus adds when it scrapes (the PodMonitor's target labels), and `le`, which
# every histogram's _bucket series has.
TARGET_LABELS = {"namespace", "pod", "instance", "job"}
# Bursts wider than the warm pool until one request found no worker ready (a cold start):
# bounded, and the test fails if none ever did, so every name the queries use has samples.
MAX_BURSTS = 20
# What the dashboard shows (docs/operations.md "Metrics and logs"), as the daemon names it.
DASHBOARD_MUST_SHOW = {
    "sandboxd_executions_total",  # executions by verdict
    "sandboxd_execution_duration_seconds_bucket",  # latency
    "sandboxd_queue_wait_seconds_bucket",  # queue wait
    "sandboxd_pool_ready_workers",  # ready workers
    "sandboxd_cold_starts_total",  # cold starts
    "sandboxd_execution_peak_memory_bytes_bucket",  # peak memory
    "sandboxd_quota_rejections_total",  # quota rejections
    "sandboxd_worker_boot_failures_total",  # boot failures
}
SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(120)\n"
WAIT_S = 60.0


@dataclass(frozen=True)
class Scrape:
    declared: set[str]  # every sample name a family on /metrics can have
    samples: dict[str, set[str]]  # sample name -> label names seen on its samples


def scrape(daemon: Daemon) -> str:
    assert daemon.metrics_port
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def parse(text: str) -> Scrape:
    declared: set[str] = set()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            declared.add(f"{family.name}_total")
        elif family.type == "histogram":
            declared |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            declared.add(family.name)
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return Scrape(declared, samples)


def merge(*scrapes: Scrape) -> Scrape:
    declared: set[str] = set()
    samples: dict[str, set[str]] = {}
    for s in scrapes:
        declared |= s.declared
        for name, labels in s.samples.items():
            samples.setdefault(name, set()).update(labels)
    return Scrape(declared, samples)


def exercise(daemon: Daemon, keys: dict[str, str]) -> None:
    with Client(daemon.address, api_key=keys["wide"]) as client:
        for runtime, code in (("python", "print('hi')"), ("javascript", "console.log('hi')")):
            result = client.execute(runtime, code)
            assert result.verdict is Verdict.OK, result
            assert result.stdout == b"hi\n"
        # bursts wider than the warm pool (1 per runtime) until a request found none ready
        cold = 0
        for _ in range(MAX_BURSTS):
            with ThreadPoolExecutor(8) as burst:
                results = list(
                    burst.map(lambda _: client.execute("javascript", "console.log(1)"), range(8))
                )
            assert all(r.verdict is Verdict.OK and r.stdout == b"1\n" for r in results), results
            cold += sum(r.cold_start for r in results)
            if cold:
                break
        assert cold, f"no cold start in {MAX_BURSTS} bursts of 8 on a warm pool of 1"
    with Client(daemon.address, api_key=keys["solo"]) as client:
        # the tenant's one slot held by an async execution; a synchronous one is refused
        execution_id = client.submit("python", SLEEPER)
        try:
            deadline = time.monotonic() + WAIT_S
            while client.get_execution(execution_id).state is not ExecutionState.RUNNING:
                assert time.monotonic() < deadline, "the async execution never started"
                time.sleep(0.05)
            with pytest.raises(QuotaExceeded):
                client.execute("python", "print('refused')")
        finally:
            client.cancel_execution(execution_id)
        assert client.wait(execution_id, timeout_s=WAIT_S).finished


@pytest.fixture(scope="module")
def exported() -> Iterator[Scrape]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-deploy-") as tmp:
        path = os.path.join(tmp, "tenants.toml")
        keys = tenants_file(
            path,
            {"solo": {"max_concurrent_executions": 1}, "wide": {"max_concurrent_executions": 8}},
        )
        a = start(["--tenants", path, "--max-concurrent", "8"], warm=1)
        try:
            exercise(a, keys)
            scraped_a = parse(scrape(a))
        finally:
            assert a.stop() == 0, "".join(a.raw_stderr[-20:])
    b = start(["--runtimes", "javascript", "--node", "/bin/false"], warm=1)
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            scraped_b = parse(scrape(b))
            if "sandboxd_worker_boot_failures_total" in scraped_b.samples:
                break
            assert time.monotonic() < deadline, "no boot failure counted"
            time.sleep(0.1)
    finally:
        assert b.stop() == 0, "".join(b.raw_stderr[-20:])
    yield merge(scraped_a, scraped_b)


def check(queries: list[tuple[str, str]], metrics: Scrape) -> list[str]:
    """Every problem: a name not exported, a name without samples, a grouping label that no
    sample of the query's metrics has."""
    problems = []
    for where, query in queries:
        names = grafana_query_metrics(query)
        labels: set[str] = set(TARGET_LABELS)
        for name in sorted(names):
            if name not in metrics.declared:
                problems.append(f"{where}: {name} is not exported")
            elif name not in metrics.samples:
                problems.append(f"{where}: {name} has no samples")
            labels |= metrics.samples.get(name, set())
        missing = grouping_labels(query) - labels
        if missing:
            problems.append(f"{where}: no sample of {sorted(names)} has {sorted(missing)}")
    return problems


def test_dashboard_queries_only_what_the_daemon_exports(exported: Scrape) -> None:
    queries = dashboard_queries(dashboard())
    assert len(queries) >= len(DASHBOARD_MUST_SHOW)
    assert check(queries, exported) == []


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    shown: set[str] = set()
    for _where, query in dashboard_queries(dashboard()):
        shown |= grafana_query_metrics(query)
    assert shown >= DASHBOARD_MUST_SHOW, DASHBOARD_MUST_SHOW - shown


def test_adapter_rule_queries_only_what_the_daemon_exports(exported: Scrape) -> None:
    assert check(adapter_queries(), exported) == []


def test_adapter_rule_is_the_queue_wait_mean() -> None:
    """The HPA's signal is sum/count of sandboxd_queue_wait_seconds, nothing else."""
    (rule,) = adapter_rules()
    assert grafana_query_metrics(rule["seriesQuery"]) == {"sandboxd_queue_wait_seconds_sum"}
    assert grafana_query_metrics(rule["metricsQuery"]) == {
        "sandboxd_queue_wait_seconds_sum",
        "sandboxd_queue_wait_seconds_count",
    }


def test_the_exercise_produced_what_the_checks_rely_on(exported: Scrape) -> None:
    """The scrape is not empty by accident: the events above were counted."""
    for name in (
        "sandboxd_cold_starts_total",
        "sandboxd_executions_total",
        "sandboxd_queue_wait_seconds_count",
        "sandboxd_quota_rejections_total",
        "sandboxd_requests_rejected_total",
        "sandboxd_worker_boot_failures_total",
        "sandboxd_execution_peak_memory_bytes_bucket",
    ):
        assert name in exported.samples, name
    assert {"runtime", "verdict"} <= exported.samples["sandboxd_executions_total"]
    assert "quota" in exported.samples["sandboxd_quota_rejections_total"]
