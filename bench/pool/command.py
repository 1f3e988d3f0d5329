"""`python -m bench pool`: the warm pool against per-request spawns, in one invocation.

Order: bare idle interpreter PSS (nothing else running) → start the pool, wait until
every runtime has its warm workers, PSS of the pool and its workers → per runtime, the
pool and the baselines interleaved: latency of each, then throughput of each per thread
count (an idle pool uses no CPU, so it can stay open while the baselines run) → targets →
report.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import baselines, harness, options, output
from bench.common.machine import engine_source, machine_info
from bench.common.output import log
from bench.common.runtimes import BenchRuntime, select_runtimes
from bench.common.stats import PoolMemory, RuntimeMemory, SystemResult
from bench.pool import engine as pool_bench
from bench.pool import memory
from bench.pool.report import Report, render
from bench.pool.targets import evaluate

POOL_BOOT_TIMEOUT_S = 120.0
REFILL_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class Settings:
    iterations: int
    warmup: int
    duration_s: float
    thread_counts: list[int]
    warm_workers: int
    memory_settle_s: float
    memory_samples: int


SCALE = options.Scale(iterations=(200, 30), duration_s=(5.0, 1.5), threads=([2, 4], [2, 4]))


def settings_from(args: argparse.Namespace) -> Settings:
    m = options.measured(args, SCALE)
    return Settings(
        iterations=m.iterations,
        warmup=m.warmup,
        duration_s=m.duration_s,
        thread_counts=m.thread_counts,
        warm_workers=args.warm_workers,
        memory_settle_s=0.5 if args.quick else 1.0,
        memory_samples=args.warm_workers,
    )


def _brief(result: SystemResult) -> str:
    run = result.back_to_back if result.system == "pool-b2b" else result.latency
    parts = []
    if run is not None and run.stats is not None:
        parts.append(f"p50 {run.stats.p50_ms:.2f} ms p99 {run.stats.p99_ms:.2f} ms")
    if run is not None and run.failures:
        parts.append(f"{run.failures} failed: {run.first_error}")
    for threads, tput in sorted(result.throughput.items()):
        parts.append(f"x{threads} {tput.per_s:.0f}/s")
    return ", ".join(parts) or result.skipped


@dataclasses.dataclass
class Contender:
    """One system measured for one runtime: how to run it once, and where results go."""

    result: SystemResult
    run_once: harness.RunOnce
    before_each: Callable[[], None] | None = None  # the pool: wait until fully replenished
    back_to_back: SystemResult | None = None  # the pool: also measured without waiting


class PoolSession:
    """The engine's Pool, open for the whole run (an idle pool uses no CPU)."""

    def __init__(self, engine: Any, pool: Any, runtimes: list[BenchRuntime], settings: Settings):
        self.engine = engine
        self.pool = pool
        self.runtimes = [pool_bench.engine_runtime(engine, rt) for rt in runtimes]
        self.warm_workers = settings.warm_workers
        self.refill_timeouts = 0

    def wait_full(self, timeout_s: float) -> bool:
        try:
            return pool_bench.wait_until_ready(
                self.pool, self.runtimes, self.warm_workers, timeout_s
            )
        except Exception as exc:  # a broken health() must not stop the baselines
            log(f"  pool health failed: {type(exc).__name__}: {exc}")
            return False

    def refill(self) -> None:
        if not self.wait_full(REFILL_TIMEOUT_S):
            self.refill_timeouts += 1

    def contender(self, runtime: BenchRuntime) -> Contender:
        warm = SystemResult(runtime=runtime.name, system="pool")
        b2b = SystemResult(runtime=runtime.name, system="pool-b2b")
        run_once = pool_bench.pool_runner(self.engine, self.pool, runtime)
        self.refill()
        probe = run_once()
        if not probe.ok:
            warm.skipped = b2b.skipped = f"does not run: {probe.error}"
        return Contender(warm, run_once, before_each=self.refill, back_to_back=b2b)


def baseline_contenders(runtime: BenchRuntime) -> list[Contender]:
    contenders = []
    for baseline in baselines.BASELINES:
        result = SystemResult(runtime=runtime.name, system=baseline.name)
        argv = baseline.argv(runtime, runtime.hello_argv)
        run_once = baselines.spawn_runner(argv, runtime.expected_stdout)
        why = baseline.missing()
        if not why:
            probe = run_once()
            why = "" if probe.ok else f"does not run here: {probe.error}"
        result.skipped = why
        contenders.append(Contender(result, run_once))
    return contenders


def measure_runtime(contenders: list[Contender], settings: Settings) -> None:
    """Every contender's latency, then throughput per thread count, the systems interleaved.

    Interleaving keeps the pool's numbers and the baselines' close together in time, so a
    neighbour loading this shared VM for a minute hits both sides of a ratio alike.
    """
    live = [c for c in contenders if not c.result.skipped]
    for c in contenders:
        if c.result.skipped:
            log(f"  {c.result.runtime:10} {c.result.system:8} skipped: {c.result.skipped}")
    for c in live:
        name = f"{c.result.runtime:10} {c.result.system:8}"
        log(f"  {name} latency ({settings.iterations} runs)...")
        c.result.latency = harness.measure_latency(
            c.run_once, settings.iterations, settings.warmup, before_each=c.before_each
        )
        if c.back_to_back is not None:
            if c.before_each:
                c.before_each()
            log(f"  {name} back-to-back latency ({settings.iterations} runs)...")
            c.back_to_back.back_to_back = harness.measure_latency(
                c.run_once, settings.iterations, warmup=0
            )
    for threads in settings.thread_counts:
        for c in live:
            if c.before_each:
                c.before_each()
            log(f"  {c.result.runtime:10} {c.result.system:8} throughput x{threads}...")
            c.result.throughput[threads] = harness.measure_throughput(
                c.run_once, threads, settings.duration_s
            )
    for c in live:
        log(f"  {c.result.runtime:10} {c.result.system:8} {_brief(c.result)}")
        if c.back_to_back is not None:
            log(f"  {c.result.runtime:10} pool-b2b {_brief(c.back_to_back)}")


def load_engine(args: argparse.Namespace, machine: dict[str, str]) -> tuple[Any, str]:
    engine_dir: Path | None = None
    if args.engine_commit:
        engine_dir, why = pool_bench.export_engine(args.engine_commit)
        if engine_dir is None:
            return None, why
    engine, why = pool_bench.load_engine(engine_dir)
    if engine is not None:
        machine["engine"] = engine_source(getattr(engine, "__file__", None))
        if args.engine_commit:
            rev = pool_bench.resolve_commit(args.engine_commit)
            machine["engine"] = f"pool/ as committed at {rev} (git archive)"
    return engine, why


def open_session(
    engine: Any,
    runtimes: list[BenchRuntime],
    settings: Settings,
    stack: contextlib.ExitStack,
    notes: list[str],
) -> PoolSession | None:
    max_concurrent = max([*settings.thread_counts, 1])
    engine_runtimes = [pool_bench.engine_runtime(engine, rt) for rt in runtimes]
    log(f"starting Pool ({settings.warm_workers} warm workers per runtime)...")
    started = time.monotonic()
    try:
        pool = stack.enter_context(
            pool_bench.open_pool(engine, settings.warm_workers, max_concurrent, engine_runtimes)
        )
    except Exception as exc:  # a benchmark reports, never stops
        traceback.print_exc()
        notes.append(f"pool not measured: Pool() failed: {type(exc).__name__}: {exc}")
        return None
    session = PoolSession(engine, pool, runtimes, settings)
    ready = session.wait_full(POOL_BOOT_TIMEOUT_S)
    boot_s = time.monotonic() - started
    log(f"  pool {'ready' if ready else 'NOT fully ready'} after {boot_s:.2f} s")
    notes.append(
        f"Pool reached {settings.warm_workers} ready workers per runtime after {boot_s:.2f} s"
        if ready
        else f"Pool did not reach {settings.warm_workers} ready workers per runtime "
        f"within {POOL_BOOT_TIMEOUT_S:.0f} s: {pool_bench.describe_readiness(pool)}"
    )
    return session


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    runtimes = select_runtimes(args.runtimes, python=args.python, node=args.node)
    names = [rt.name for rt in runtimes]
    command = "python -m bench " + " ".join(sys.argv[1:])
    notes: list[str] = []
    log(f"bench pool: runtimes {', '.join(names)}; {settings}")
    machine = machine_info(runtimes)

    engine = None
    if args.skip_pool:
        notes.append("pool not measured (--skip-pool)")
    else:
        engine, why = load_engine(args, machine)
        if engine is None:
            notes.append(f"pool not measured: {why}")
            log(f"pool not measured: {why}")

    log("bare idle interpreter PSS (before the pool starts)...")
    mem: dict[str, RuntimeMemory] = {}
    for runtime in runtimes:
        samples = memory.bare_idle_pss(runtime, settings.memory_samples, settings.memory_settle_s)
        mem[runtime.name] = RuntimeMemory(runtime=runtime.name, bare_idle_pss_bytes=samples)

    results: dict[tuple[str, str], SystemResult] = {}
    pool_mem: PoolMemory | None = None
    with contextlib.ExitStack() as stack:
        session = open_session(engine, runtimes, settings, stack, notes) if engine else None
        if session is not None:
            # Memory first, while every worker is warm and idle and nothing has run yet.
            time.sleep(settings.memory_settle_s)
            pool_mem, worker_mem = memory.pool_memory(session.pool)
            if "FALLBACK" in pool_mem.source:
                notes.append(pool_mem.source)
            for name, worker in worker_mem.items():
                if name in mem:
                    mem[name].worker_pss_bytes = worker.worker_pss_bytes
                    mem[name].worker_processes = worker.worker_processes

        for runtime in runtimes:
            log(f"{runtime.name}...")
            contenders = []
            if session is not None:
                contenders.append(session.contender(runtime))
            contenders += baseline_contenders(runtime)
            for c in contenders:
                results[(runtime.name, c.result.system)] = c.result
                if c.back_to_back is not None:
                    results[(runtime.name, c.back_to_back.system)] = c.back_to_back
            measure_runtime(contenders, settings)

        if session is not None and session.refill_timeouts:
            notes.append(
                f"{session.refill_timeouts} time(s) the pool did not refill within "
                f"{REFILL_TIMEOUT_S:.0f} s before a warm call; those calls may be cold"
            )
        log("closing the pool...")

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    notes.append(
        f"Load average at end: {load}. The throughput runs alone keep about "
        f"{max(settings.thread_counts, default=1)}+ processes runnable; a start value well "
        "above 0 means other work on this shared VM competed with the measurement"
    )
    checks = evaluate(results, mem, pool_mem, names, settings.thread_counts, settings.warm_workers)
    report = Report(
        command=command,
        machine=machine,
        runtimes=names,
        thread_counts=settings.thread_counts,
        iterations=settings.iterations,
        duration_s=settings.duration_s,
        warm_workers=settings.warm_workers,
        results=results,
        memory=mem,
        pool_memory=pool_mem,
        checks=checks,
        notes=notes,
    )
    output.publish(args, "pool", render(report), report)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(
        parser,
        SCALE,
        iterations="sequential latency iterations per system",
        duration="seconds per throughput run",
        threads="concurrent callers for throughput",
        warm_workers="warm workers per runtime",
    )
    parser.add_argument("--skip-pool", action="store_true", help="measure the baselines only")
    parser.add_argument(
        "--engine-commit",
        metavar="REV",
        help="measure pool/ as committed at REV (git archive to a temp dir), not the working tree",
    )
    output.add_arguments(parser)
