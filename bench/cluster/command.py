"""`python -m bench cluster`: what the Redis path costs, and what three nodes buy, on this
machine in one invocation.

Order: start redis-server (AOF, `appendfsync always`) and node A (`sandboxd serve
--redis-url`) → latency: N paced rounds on node A, each a synchronous `Execute` of Python
hello and an asynchronous `Submit` + `GetExecution(wait_ms=30000)` of the same program, in
alternating order → throughput with one node: J jobs submitted by T client threads through
node A, each thread then long-polls its own jobs; jobs/s = J / (first submit → last result)
→ start nodes B and C → the same J jobs over A, B and C (round robin) → stop everything →
report (terminal, and the "Cluster" section of bench/RESULTS.md).

Every node has the same settings (--warm-workers, --max-concurrent); all of them, Redis and
the client threads share this machine's CPUs, so "three nodes" measures coordination
through Redis on one host, not three machines' worth of CPU."""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass

from bench.cluster.report import ClusterReport, ThroughputResult, render
from bench.cluster.servers import RedisProcess, start_node, start_redis
from bench.common import output
from bench.common.machine import machine_info
from bench.common.output import log
from bench.common.runtimes import python_runtime
from bench.common.servers import ServerProcess
from bench.common.stats import LatencyStats
from sandboxd_client import NO_RETRY, Client, Verdict

HELLO = "print('hello')"
PAUSE_S = 0.04  # before each paced call: the pool refills its warm workers
RPC_TIMEOUT_S = 60.0
SETTLE_S = 1.0


@dataclass(frozen=True)
class Settings:
    iterations: int
    jobs: int
    threads: int
    warm_workers: int
    max_concurrent: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=0, help="paced latency rounds (200)")
    parser.add_argument("--jobs", type=int, default=0, help="jobs per throughput run (600)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (8)")
    parser.add_argument("--warm-workers", type=int, default=4, help="per node (4)")
    parser.add_argument("--max-concurrent", type=int, default=4, help="per node (4)")
    parser.add_argument("--python", default=None, help="worker interpreter (default: this one)")
    output.add_arguments(parser)


def _check(result_stdout: bytes, verdict: Verdict) -> None:
    if verdict is not Verdict.OK or result_stdout != b"hello\n":
        raise RuntimeError(f"unexpected result: {verdict} {result_stdout!r}")


def measure_latency(address: str, iterations: int) -> tuple[LatencyStats, LatencyStats]:
    """(synchronous Execute, Submit → result) on one node, interleaved, paced."""
    sync_ns: list[int] = []
    async_ns: list[int] = []
    with Client(address, retry=NO_RETRY) as client:
        for _ in range(max(3, iterations // 10)):  # warm-up: connection, code paths
            client.execute("python", HELLO, timeout_s=RPC_TIMEOUT_S)
            client.wait(client.submit("python", HELLO), RPC_TIMEOUT_S)
        for i in range(iterations):
            for kind in ("sync", "async") if i % 2 == 0 else ("async", "sync"):
                time.sleep(PAUSE_S)
                began = time.perf_counter_ns()
                if kind == "sync":
                    result = client.execute("python", HELLO, timeout_s=RPC_TIMEOUT_S)
                    sync_ns.append(time.perf_counter_ns() - began)
                    _check(result.stdout, result.verdict)
                else:
                    execution_id = client.submit("python", HELLO, timeout_s=RPC_TIMEOUT_S)
                    execution = client.get_execution(
                        execution_id, wait_ms=30_000, timeout_s=RPC_TIMEOUT_S
                    )
                    async_ns.append(time.perf_counter_ns() - began)
                    assert execution.result is not None, execution
                    _check(execution.result.stdout, execution.result.verdict)
    sync, async_ = LatencyStats.from_ns(sync_ns), LatencyStats.from_ns(async_ns)
    assert sync is not None and async_ is not None
    return sync, async_


def measure_throughput(addresses: list[str], jobs: int, threads: int) -> ThroughputResult:
    """`jobs` Python hellos submitted round robin over `addresses` by `threads` threads; each
    thread then waits for its own. Time from the first submit to the last result."""
    clients = [Client(addresses[t % len(addresses)], retry=NO_RETRY) for t in range(threads)]
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        client = clients[t]
        mine = [
            client.submit("python", HELLO, timeout_s=RPC_TIMEOUT_S) for _ in range(t, jobs, threads)
        ]
        for execution_id in mine:
            execution = client.wait(execution_id, RPC_TIMEOUT_S)
            result = execution.result
            if result is None or result.verdict is not Verdict.OK or result.stdout != b"hello\n":
                with lock:
                    failures.append(f"{execution_id}: {execution}")

    def run(t: int) -> None:
        start.wait()
        work(t)

    try:
        for client in clients:  # connect before timing
            client.execute("python", HELLO, timeout_s=RPC_TIMEOUT_S)
        workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        time.sleep(0.2)
        began = time.perf_counter()
        start.wait()
        for w in workers:
            w.join()
        elapsed_s = time.perf_counter() - began
    finally:
        for client in clients:
            client.close()
    if failures:
        raise RuntimeError(f"{len(failures)} jobs failed, e.g. {failures[0]}")
    return ThroughputResult(nodes=len(addresses), jobs=jobs, elapsed_s=elapsed_s)


def jobs_per_node(nodes: list[ServerProcess]) -> list[int]:
    return [sum(1 for e in n.log_entries() if e.get("msg") == "execution taken") for n in nodes]


def run(args: argparse.Namespace) -> int:
    settings = Settings(
        iterations=args.iterations or (20 if args.quick else 200),
        jobs=args.jobs or (60 if args.quick else 600),
        threads=args.threads,
        warm_workers=args.warm_workers,
        max_concurrent=args.max_concurrent,
    )
    runtime = python_runtime(args.python)
    info = machine_info([runtime])
    redis: RedisProcess | None = None
    nodes: list[ServerProcess] = []
    try:
        redis = start_redis()
        info["redis"] = redis.version()
        log(f"redis-server on port {redis.port}; starting node A")

        def node(name: str) -> ServerProcess:
            assert redis is not None
            return start_node(
                redis.url,
                settings.warm_workers,
                settings.max_concurrent,
                runtime.interpreter,
                name,
            )

        nodes.append(node("node-a"))
        time.sleep(SETTLE_S)
        log(f"latency: {settings.iterations} paced rounds of Execute and Submit→result")
        sync, async_ = measure_latency(nodes[0].address, settings.iterations)
        log(f"throughput: {settings.jobs} jobs through one node")
        one = measure_throughput([nodes[0].address], settings.jobs, settings.threads)
        taken_before = jobs_per_node(nodes)
        log("starting nodes B and C")
        nodes.append(node("node-b"))
        nodes.append(node("node-c"))
        time.sleep(SETTLE_S)
        log(f"throughput: {settings.jobs} jobs through three nodes")
        three = measure_throughput([n.address for n in nodes], settings.jobs, settings.threads)
        taken_after = jobs_per_node(nodes)
        spread = [
            after - (taken_before[i] if i < len(taken_before) else 0)
            for i, after in enumerate(taken_after)
        ]
    finally:
        for n in nodes:
            n.stop()
        if redis is not None:
            redis.stop()
    report = ClusterReport(
        command="python -m bench cluster" + (" --quick" if args.quick else ""),
        machine=info,
        settings=settings.__dict__,
        sync=sync,
        async_=async_,
        one_node=one,
        three_nodes=three,
        three_node_spread=spread,
    )
    output.publish(args, "cluster", render(report), report)
    return 0
