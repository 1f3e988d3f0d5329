"""The `cluster` section of bench/RESULTS.md and the terminal: Submit → result against
synchronous Execute (p50/p99 and the difference), three nodes against one (jobs/s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.common.stats import LatencyStats


@dataclass(frozen=True)
class ThroughputResult:
    nodes: int
    jobs: int
    elapsed_s: float

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.elapsed_s


@dataclass(frozen=True)
class ClusterReport:
    command: str
    machine: dict[str, str]
    settings: dict[str, Any]
    sync: LatencyStats
    async_: LatencyStats
    one_node: ThroughputResult
    three_nodes: ThroughputResult
    three_node_spread: list[int]  # jobs each node took in the three-node run


def render(r: ClusterReport) -> str:
    s = r.settings
    machine = "; ".join(f"{k} {v}" for k, v in r.machine.items() if k != "date")
    lines = [
        f"## Cluster over Redis: `{r.command}` — {r.machine['date']}",
        "",
        f"Machine: {machine}.",
        "",
        f"Nodes: `python -m sandboxd serve --redis-url ... --warm-workers {s['warm_workers']} "
        f"--max-concurrent {s['max_concurrent']} --runtimes python`, all on this machine with "
        "one `redis-server` (AOF, `appendfsync always`) and the client threads.",
        "",
        f"### Submit → result vs synchronous Execute (Python hello, node A, "
        f"{r.sync.samples} paced rounds, interleaved)",
        "",
        "| path | p50 ms | p99 ms | mean ms |",
        "| --- | ---: | ---: | ---: |",
        f"| Execute | {r.sync.p50_ms:.2f} | {r.sync.p99_ms:.2f} | {r.sync.mean_ms:.2f} |",
        f"| Submit + GetExecution(wait) | {r.async_.p50_ms:.2f} | {r.async_.p99_ms:.2f} | "
        f"{r.async_.mean_ms:.2f} |",
        f"| overhead of the Redis path | {r.async_.p50_ms - r.sync.p50_ms:+.2f} | "
        f"{r.async_.p99_ms - r.sync.p99_ms:+.2f} | {r.async_.mean_ms - r.sync.mean_ms:+.2f} |",
        "",
        f"### Throughput: {r.one_node.jobs} async jobs, {s['threads']} client threads",
        "",
        "| nodes | seconds | jobs/s | jobs per node |",
        "| ---: | ---: | ---: | --- |",
        f"| 1 | {r.one_node.elapsed_s:.2f} | {r.one_node.jobs_per_s:.1f} | {r.one_node.jobs} |",
        f"| 3 | {r.three_nodes.elapsed_s:.2f} | {r.three_nodes.jobs_per_s:.1f} | "
        f"{' / '.join(str(n) for n in r.three_node_spread)} |",
        "",
        f"Three nodes / one node: **{r.three_nodes.jobs_per_s / r.one_node.jobs_per_s:.2f}x** "
        "on this machine (the nodes share its CPUs).",
    ]
    return "\n".join(lines) + "\n"
