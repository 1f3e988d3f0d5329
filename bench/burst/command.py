"""`python -m bench burst`: 200 executions at once from one tenant, through the daemon's
Submit, against the per-request bubblewrap baseline running the same 200 two at a time.

Order: write a tenants file with one tenant allowed the whole burst (`sandboxd tenants add`)
→ per node concurrency N (the daemon's --max-concurrent): start `sandboxd serve --tenants
... --max-concurrent N` on port 0 → per round, per runtime: a pause (the pool refills) and
one burst through the daemon, then the same burst with bwrap → stop the daemon → report
(terminal, and the "Burst" section of bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.burst.report import BurstReport, BurstResult, BurstRun, render
from bench.common import baselines, output
from bench.common.machine import machine_info
from bench.common.options import _ints, _names
from bench.common.output import log
from bench.common.runtimes import BenchRuntime, select_runtimes
from bench.common.servers import ServerProcess, start_daemon
from bench.common.tenants import TenantQuotas, bench_tenant
from sandboxd_client import NO_RETRY, NotFound, SandboxdError, Verdict
from sandboxd_client.aio import AsyncClient

TENANT = "burst"
CHANNELS = 4  # client connections (each carries at most 100 calls at once by default)
CLIENT_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)
RPC_TIMEOUT_S = 120.0
REFILL_PAUSE_S = 2.0  # before each burst: the pool boots its warm workers again
SETTLE_S = 2.0  # after the daemon listens
# What the daemon reserves for each queued job, rounded up: with the default limits a hello
# reserves about 19 MiB (its request, room for 3 x max_output_bytes of output and for its out/
# files). The tenant's share and the node's --async-max-bytes are sized so the whole burst fits.
ASYNC_BYTES_PER_JOB = 32 * 1024**2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs", type=int, default=0, help="executions per burst (200; 40 --quick)"
    )
    parser.add_argument("--rounds", type=int, default=0, help="bursts of each kind (3; 1 --quick)")
    parser.add_argument(
        "--node-concurrency",
        type=_ints,
        default=None,
        help="comma-separated --max-concurrent values of the daemon, one daemon each "
        "(default 2,16,200: bwrap's, the daemon's default, the whole burst; 16 with --quick)",
    )
    parser.add_argument(
        "--bwrap-concurrency", type=int, default=2, help="bwrap spawns at a time (default 2)"
    )
    parser.add_argument(
        "--runtimes",
        type=_names,
        default=["python", "javascript"],
        help="comma-separated: python,javascript (default both)",
    )
    parser.add_argument(
        "--warm-workers", type=int, default=8, help="the daemon's --warm-workers (8)"
    )
    parser.add_argument("--python", help="Python interpreter (default: this one's real binary)")
    parser.add_argument("--node", help="Node interpreter (default: node on PATH)")
    output.add_arguments(parser)


# -- one burst -------------------------------------------------------------------------------


async def _daemon_burst(address: str, key: str, runtime: BenchRuntime, jobs: int) -> BurstRun:
    clients = [
        AsyncClient(address, api_key=key, retry=NO_RETRY, channel_options=CLIENT_OPTIONS)
        for _ in range(CHANNELS)
    ]
    run = BurstRun()
    accepted = 0
    try:
        for client in clients:  # connect before timing: an unknown id is NOT_FOUND at once
            with contextlib.suppress(NotFound):
                await client.get_execution("0" * 32, timeout_s=RPC_TIMEOUT_S)
        start = time.perf_counter()

        async def one(i: int) -> None:
            nonlocal accepted
            client = clients[i % CHANNELS]
            try:
                execution_id = await client.submit(
                    runtime.name, runtime.hello_code, timeout_s=RPC_TIMEOUT_S
                )
                accepted += 1
                if accepted == jobs:
                    run.accepted_s = time.perf_counter() - start
                execution = await client.wait(execution_id, RPC_TIMEOUT_S)
            except SandboxdError as exc:
                run.failures += 1
                run.first_error = run.first_error or f"{type(exc).__name__}: {exc}"[:200]
                return
            done_ns = int((time.perf_counter() - start) * 1e9)
            result = execution.result
            if (
                result is None
                or result.verdict is not Verdict.OK
                or result.stdout != runtime.expected_stdout
            ):
                run.failures += 1
                got = "no result" if result is None else f"{result.verdict.value} {result.stdout!r}"
                run.first_error = run.first_error or f"{execution.state}: {got}"[:200]
                return
            run.completion_ns.append(done_ns)

        await asyncio.gather(*(one(i) for i in range(jobs)))
        run.wall_s = time.perf_counter() - start
    finally:
        for client in clients:
            await client.close()
    return run


def daemon_burst(address: str, key: str, runtime: BenchRuntime, jobs: int) -> BurstRun:
    return asyncio.run(_daemon_burst(address, key, runtime, jobs))


def bwrap_burst(runtime: BenchRuntime, jobs: int, concurrency: int) -> BurstRun:
    argv = baselines.bwrap_prefix(runtime) + runtime.hello_argv
    run_once = baselines.spawn_runner(argv, runtime.expected_stdout)
    run = BurstRun()
    lock = threading.Lock()
    start = time.perf_counter()

    def one(_: int) -> None:
        attempt = run_once()
        done_ns = int((time.perf_counter() - start) * 1e9)
        with lock:
            if attempt.ok:
                run.completion_ns.append(done_ns)
            else:
                run.failures += 1
                run.first_error = run.first_error or attempt.error

    with ThreadPoolExecutor(max_workers=concurrency) as executor:
        list(executor.map(one, range(jobs)))
    run.wall_s = time.perf_counter() - start
    return run


# -- the command ---------------------------------------------------------------------------


def _brief(run: BurstRun) -> str:
    text = f"{run.completed} OK in {run.wall_s:.2f} s ({run.per_s:.0f}/s)"
    return text + (f", {run.failures} failed: {run.first_error}" if run.failures else "")


def run(args: argparse.Namespace) -> int:
    jobs = args.jobs or (40 if args.quick else 200)
    rounds = args.rounds or (1 if args.quick else 3)
    node_concurrency = args.node_concurrency or ([16] if args.quick else [2, 16, jobs])
    runtimes = select_runtimes(args.runtimes, python=args.python, node=args.node)
    python = next((rt.interpreter for rt in runtimes if rt.name == "python"), None)
    if python is None:
        python = select_runtimes(["python"], python=args.python)[0].interpreter
    node = next((rt.interpreter for rt in runtimes if rt.name == "javascript"), None)
    machine = machine_info(runtimes)
    notes: list[str] = []
    log(f"bench burst: {jobs} jobs, {rounds} round(s), node concurrency {node_concurrency}")
    quotas = TenantQuotas(
        max_concurrent=jobs,
        max_open_calls=2 * jobs + 16,
        max_queued_jobs=jobs,
        max_async_bytes=jobs * ASYNC_BYTES_PER_JOB,
    )
    bwrap = {rt.name: BurstResult(rt.name, "bwrap", args.bwrap_concurrency) for rt in runtimes}
    results: list[BurstResult] = []
    why_no_bwrap = next(b for b in baselines.BASELINES if b.name == "bwrap").missing()
    if why_no_bwrap:
        notes.append(f"bwrap not measured: {why_no_bwrap}")
    with bench_tenant(TENANT, quotas) as (tenants_path, key):
        for concurrency in node_concurrency:
            log(f"starting sandboxd serve --max-concurrent {concurrency}...")
            settings = (
                "--tenants",
                str(tenants_path),
                "--max-concurrent",
                str(concurrency),
                "--async-max-bytes",  # the node's room, as large as the tenant's share
                str(quotas.max_async_bytes),
            )
            server: ServerProcess = start_daemon(args.warm_workers, python, node, *settings)
            mine = {rt.name: BurstResult(rt.name, "daemon", concurrency) for rt in runtimes}
            try:
                time.sleep(SETTLE_S)
                for i in range(rounds):
                    for rt in runtimes:
                        time.sleep(REFILL_PAUSE_S)
                        burst = daemon_burst(server.address, key, rt, jobs)
                        mine[rt.name].runs.append(burst)
                        log(f"  {rt.name:10} daemon c={concurrency} round {i + 1}: {_brief(burst)}")
                        if not why_no_bwrap:
                            burst = bwrap_burst(rt, jobs, args.bwrap_concurrency)
                            bwrap[rt.name].runs.append(burst)
                            log(f"  {rt.name:10} bwrap  round {i + 1}: {_brief(burst)}")
            finally:
                rc = server.stop()
                log(f"stopped the daemon (exit {rc})")
                if rc != 0:
                    notes.append(f"the daemon with --max-concurrent {concurrency} exited {rc}")
            results += mine.values()
    results += [b for b in bwrap.values() if b.runs]
    results.sort(key=lambda r: (r.runtime != "python", r.system != "daemon", r.concurrency))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    notes.append(
        f"Load average at end: {load} (at start: {machine.get('loadavg at start', '?')}); the "
        "burst keeps the daemon, its workers and the client's event loop runnable on 2 CPUs."
    )
    report = BurstReport(
        command="python -m bench " + " ".join(sys.argv[1:]),
        machine=machine,
        jobs=jobs,
        rounds=rounds,
        warm_workers=args.warm_workers,
        tenant={
            "max_concurrent_executions": quotas.max_concurrent,
            "max_open_calls": quotas.max_open_calls,
            "max_queued_jobs": quotas.max_queued_jobs,
            "max_async_bytes": quotas.max_async_bytes,
        },
        results=results,
        notes=notes,
    )
    output.publish(args, "burst", render(report), report)
    return 0
