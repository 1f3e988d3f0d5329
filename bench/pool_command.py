"""`python -m bench pool`: the warm pool against per-request spawns, in one invocation.

Order: bare idle interpreter PSS (nothing else running) → baselines (no pool running) →
the pool (warm latency, back-to-back latency, throughput, memory) → targets → report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import baselines, harness, memory, pool_bench
from bench.machine import engine_source, machine_info
from bench.report import Report, render, write_results
from bench.runtimes import BenchRuntime, select_runtimes
from bench.stats import PoolMemory, RuntimeMemory, SystemResult
from bench.targets import evaluate

DEFAULT_RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
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


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    iterations = args.iterations or (30 if quick else 200)
    return Settings(
        iterations=iterations,
        warmup=max(3, iterations // 10),
        duration_s=args.duration_s or (1.5 if quick else 5.0),
        thread_counts=args.threads,
        warm_workers=args.warm_workers,
        memory_settle_s=0.5 if quick else 1.0,
        memory_samples=args.warm_workers,
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def measure_baselines(
    runtime: BenchRuntime, settings: Settings
) -> dict[tuple[str, str], SystemResult]:
    results = {}
    for baseline in baselines.BASELINES:
        result = SystemResult(runtime=runtime.name, system=baseline.name)
        results[(runtime.name, baseline.name)] = result
        why = baseline.missing()
        argv = baseline.argv(runtime, runtime.hello_argv)
        run_once = baselines.spawn_runner(argv, runtime.expected_stdout)
        if not why:
            probe = run_once()
            why = "" if probe.ok else f"does not run here: {probe.error}"
        if why:
            result.skipped = why
            log(f"  {runtime.name:10} {baseline.name:8} skipped: {why}")
            continue
        log(f"  {runtime.name:10} {baseline.name:8} latency ({settings.iterations} runs)...")
        result.latency = harness.measure_latency(run_once, settings.iterations, settings.warmup)
        for threads in settings.thread_counts:
            log(f"  {runtime.name:10} {baseline.name:8} throughput x{threads}...")
            result.throughput[threads] = harness.measure_throughput(
                run_once, threads, settings.duration_s
            )
        log(f"  {runtime.name:10} {baseline.name:8} {_brief(result)}")
    return results


def measure_pool(
    engine: Any, runtimes: list[BenchRuntime], settings: Settings, notes: list[str]
) -> tuple[dict[tuple[str, str], SystemResult], PoolMemory | None, dict[str, RuntimeMemory]]:
    results: dict[tuple[str, str], SystemResult] = {}
    engine_runtimes = [pool_bench.engine_runtime(engine, rt) for rt in runtimes]
    max_concurrent = max([*settings.thread_counts, 1])
    log(f"  starting Pool ({settings.warm_workers} warm workers per runtime)...")
    started = time.monotonic()
    with pool_bench.open_pool(
        engine, settings.warm_workers, max_concurrent, engine_runtimes
    ) as pool:
        ready = pool_bench.wait_until_ready(
            pool, engine_runtimes, settings.warm_workers, POOL_BOOT_TIMEOUT_S
        )
        boot_s = time.monotonic() - started
        log(f"  pool {'ready' if ready else 'NOT fully ready'} after {boot_s:.2f} s")
        notes.append(
            f"Pool reached {settings.warm_workers} ready workers per runtime after {boot_s:.2f} s"
            if ready
            else f"Pool did not reach {settings.warm_workers} ready workers per runtime "
            f"within {POOL_BOOT_TIMEOUT_S:.0f} s: {pool_bench.describe_readiness(pool)}"
        )

        # Memory first, while every worker is warm and idle and nothing has run yet.
        time.sleep(settings.memory_settle_s)
        pool_mem, worker_mem = memory.pool_memory(pool)
        if "FALLBACK" in pool_mem.source:
            notes.append(pool_mem.source)

        refill_timeouts = 0

        def refill() -> None:
            nonlocal refill_timeouts
            if not pool_bench.wait_until_ready(
                pool, engine_runtimes, settings.warm_workers, REFILL_TIMEOUT_S
            ):
                refill_timeouts += 1

        for runtime in runtimes:
            run_once = pool_bench.pool_runner(engine, pool, runtime)
            warm = SystemResult(runtime=runtime.name, system="pool")
            b2b = SystemResult(runtime=runtime.name, system="pool-b2b")
            results[(runtime.name, "pool")] = warm
            results[(runtime.name, "pool-b2b")] = b2b
            name = runtime.name
            refill()
            probe = run_once()
            if not probe.ok:
                warm.skipped = b2b.skipped = f"does not run: {probe.error}"
                log(f"  {name:10} pool     skipped: {warm.skipped}")
                continue
            log(f"  {name:10} pool     warm latency ({settings.iterations} runs)...")
            warm.latency = harness.measure_latency(
                run_once, settings.iterations, settings.warmup, before_each=refill
            )
            refill()
            log(f"  {name:10} pool     back-to-back latency...")
            b2b.back_to_back = harness.measure_latency(run_once, settings.iterations, warmup=0)
            for threads in settings.thread_counts:
                refill()
                log(f"  {name:10} pool     throughput x{threads}...")
                warm.throughput[threads] = harness.measure_throughput(
                    run_once, threads, settings.duration_s
                )
            log(f"  {name:10} pool     {_brief(warm)}")
            log(f"  {name:10} pool-b2b {_brief(b2b)}")
        if refill_timeouts:
            notes.append(
                f"{refill_timeouts} time(s) the pool did not refill within {REFILL_TIMEOUT_S:.0f} s "
                "before a warm call; those calls may be cold"
            )
    return results, pool_mem, worker_mem


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    runtimes = select_runtimes(args.runtimes, python=args.python, node=args.node)
    names = [rt.name for rt in runtimes]
    command = "python -m bench " + " ".join(sys.argv[1:])
    notes: list[str] = []
    log(f"bench pool: runtimes {', '.join(names)}; {settings}")
    machine = machine_info(runtimes)

    log("bare idle interpreter PSS...")
    mem: dict[str, RuntimeMemory] = {}
    for runtime in runtimes:
        samples = memory.bare_idle_pss(runtime, settings.memory_samples, settings.memory_settle_s)
        mem[runtime.name] = RuntimeMemory(runtime=runtime.name, bare_idle_pss_bytes=samples)

    log("baselines...")
    results: dict[tuple[str, str], SystemResult] = {}
    for runtime in runtimes:
        results.update(measure_baselines(runtime, settings))

    pool_mem: PoolMemory | None = None
    if args.skip_pool:
        notes.append("pool not measured (--skip-pool)")
    else:
        log("pool...")
        engine_dir: Path | None = None
        why = ""
        if args.engine_commit:
            engine_dir, why = pool_bench.export_engine(args.engine_commit)
        engine, why = pool_bench.load_engine(engine_dir) if not why else (None, why)
        if engine is None:
            notes.append(f"pool not measured: {why}")
            log(f"  pool not measured: {why}")
        else:
            machine["engine"] = engine_source(getattr(engine, "__file__", None))
            if args.engine_commit:
                rev = pool_bench.resolve_commit(args.engine_commit)
                machine["engine"] = f"pool/ as committed at {rev} (git archive)"
            try:
                pool_results, pool_mem, worker_mem = measure_pool(engine, runtimes, settings, notes)
            except Exception as exc:  # a benchmark reports, never stops
                traceback.print_exc()
                notes.append(f"pool failed: {type(exc).__name__}: {exc}")
            else:
                results.update(pool_results)
                for name, worker in worker_mem.items():
                    if name in mem:
                        mem[name].worker_pss_bytes = worker.worker_pss_bytes
                        mem[name].worker_processes = worker.worker_processes

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    notes.append(
        f"Load average at end: {load} (this VM is shared; a load well above nproc during "
        "the run means other work competed with the measurement)"
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
    text = render(report)
    print(text)

    results_path = args.results
    if results_path is None and not args.quick:
        results_path = DEFAULT_RESULTS
    if results_path is not None and not args.no_results:
        write_results(Path(results_path), text)
        log(f"results written to {results_path}")
    if args.json:
        Path(args.json).write_text(json.dumps(_as_json(report), indent=2) + "\n")
        log(f"raw results written to {args.json}")
    return 0


def _as_json(report: Report) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["results"] = {
        f"{runtime}/{system}": dataclasses.asdict(result)
        for (runtime, system), result in report.results.items()
    }
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--iterations",
        type=int,
        default=0,
        help="sequential latency iterations per system (default 200, 30 with --quick)",
    )
    parser.add_argument(
        "--duration-s",
        type=float,
        default=0.0,
        help="seconds per throughput run (default 5, 1.5 with --quick)",
    )
    parser.add_argument(
        "--runtimes",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=["python", "javascript"],
        help="comma-separated: python,javascript (default both)",
    )
    parser.add_argument(
        "--threads",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=[2, 4],
        help="comma-separated concurrent callers for throughput (default 2,4)",
    )
    parser.add_argument(
        "--warm-workers", type=int, default=8, help="warm workers per runtime (default 8)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts for a smoke run; does not write RESULTS.md unless --results is given",
    )
    parser.add_argument("--skip-pool", action="store_true", help="measure the baselines only")
    parser.add_argument(
        "--engine-commit",
        metavar="REV",
        help="measure pool/ as committed at REV (git archive to a temp dir), not the working tree",
    )
    parser.add_argument("--python", help="Python interpreter (default: this one's real binary)")
    parser.add_argument("--node", help="Node interpreter (default: node on PATH)")
    parser.add_argument(
        "--results", help=f"Markdown file to record the run in (default {DEFAULT_RESULTS.name})"
    )
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--json", help="also write the raw numbers to this JSON file")
