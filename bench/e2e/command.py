"""`python -m bench e2e`: the daemon over gRPC against the same service with bwrap per request.

Order: start both servers (the daemon with its warm pool; the bwrap-backed servicer) → open
one `sandboxd_client.Client` per client thread per server and warm its connection → the gRPC
floor (an Execute rejected INVALID_ARGUMENT) → per scenario: paced sequential latency in
alternating rounds, then throughput and latency at each concurrency level, the two servers
one after the other → optionally the sync-vs-aio echo → stop both servers (SIGTERM, wait) →
targets → report (terminal, and the "End to end over gRPC" section of bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator

from bench.common import baselines, harness, options, output
from bench.common.machine import _git, machine_info
from bench.common.output import log
from bench.common.runtimes import BenchRuntime, select_runtimes
from bench.common.servers import ServerProcess, start_bwrap_server, start_daemon
from bench.common.stats import Attempt, LatencyRun, LatencyStats, ThroughputRun
from bench.e2e.report import (
    TARGETS,
    THROUGHPUT_THREADS,
    E2EReport,
    TargetResult,
    evaluate,
    render,
)
from bench.e2e.scenarios import Scenario, scenarios
from sandboxd_client import NO_RETRY, Client, SandboxdError, Verdict
from sandboxd_client import InvalidRequest as ClientInvalidRequest

CLIENT_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)
RPC_TIMEOUT_S = 60.0
PAUSE_MS = {"python": 40.0, "javascript": 80.0}
FLOOR_PAUSE_MS = PAUSE_MS["python"]  # the paced floor idles as long as the Python hello does
SETTLE_S = 1.0  # after the daemon listens: let the pool finish booting its warm workers


@dataclasses.dataclass(frozen=True)
class Settings:
    iterations: int
    warmup: int
    rounds: int
    duration_s: float
    thread_counts: list[int]
    warm_workers: int
    floor_iterations: int
    echo: bool


SCALE = options.Scale(iterations=(200, 20), duration_s=(4.0, 0.6), threads=([1, 2, 4, 8], [1, 2]))


def settings_from(args: argparse.Namespace) -> Settings:
    m = options.measured(args, SCALE)
    return Settings(
        iterations=m.iterations,
        warmup=m.warmup,
        rounds=2 if args.quick else 4,
        duration_s=m.duration_s,
        thread_counts=m.thread_counts,
        warm_workers=args.warm_workers,
        floor_iterations=m.iterations,
        echo=args.echo and not args.quick,
    )


# -- calling a server ----------------------------------------------------------------------


class ClientSet:
    """One Client per concurrent caller; thread k of a measurement uses client k."""

    def __init__(self, address: str, count: int) -> None:
        self.clients = [
            Client(address, retry=NO_RETRY, channel_options=CLIENT_OPTIONS) for _ in range(count)
        ]

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def per_thread(self, call: Callable[[Client], Attempt]) -> harness.RunOnce:
        """A run_once for one measurement: each new calling thread takes the next client."""
        local = threading.local()
        counter = itertools.count()
        lock = threading.Lock()

        def run_once() -> Attempt:
            client = getattr(local, "client", None)
            if client is None:
                with lock:
                    client = self.clients[next(counter) % len(self.clients)]
                local.client = client
            return call(client)

        return run_once


def execute_call(scenario: Scenario) -> Callable[[Client], Attempt]:
    def call(client: Client) -> Attempt:
        try:
            r = client.execute(
                scenario.runtime,
                scenario.code,
                stdin=scenario.stdin,
                limits=scenario.limits,
                timeout_s=RPC_TIMEOUT_S,
            )
        except SandboxdError as exc:
            return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
        if r.verdict is not Verdict.OK or r.stdout != scenario.expected_stdout:
            detail = r.stderr.decode(errors="replace").strip().splitlines()
            got = f"{len(r.stdout)} B stdout" if r.verdict is Verdict.OK else r.verdict.value
            return Attempt(
                ok=False,
                error=f"{got}, expected {len(scenario.expected_stdout)} B: "
                f"{detail[-1] if detail else ''}"[:200],
                cold_start=r.cold_start,
            )
        return Attempt(
            ok=True,
            cold_start=r.cold_start,
            engine_wall_us=r.usage.wall_time_us,
            queue_wait_us=r.queue_wait_us,
        )

    return call


# One label more than a request may carry: refused by the servicer's conversion, in both
# servers, before any engine work (empty code, the floor's request before, is a valid program).
FLOOR_LABELS = {f"l{i}": "" for i in range(65)}


def floor_call(client: Client) -> Attempt:
    """Execute with 65 labels: INVALID_ARGUMENT from the servicer, no engine work."""
    try:
        client.execute("python", "print(1)", labels=FLOOR_LABELS, timeout_s=RPC_TIMEOUT_S)
    except ClientInvalidRequest:
        return Attempt(ok=True)
    except SandboxdError as exc:
        return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
    return Attempt(ok=False, error="a request with 65 labels was accepted")


# -- measuring -----------------------------------------------------------------------------


@dataclasses.dataclass
class _Samples:
    ns: list[int] = dataclasses.field(default_factory=list)
    engine_ns: list[int] = dataclasses.field(default_factory=list)
    queue_ns: list[int] = dataclasses.field(default_factory=list)
    failures: int = 0
    cold: int = 0
    first_error: str = ""

    def run(self) -> LatencyRun:
        return LatencyRun(
            stats=LatencyStats.from_ns(self.ns),
            failures=self.failures,
            cold_starts=self.cold,
            first_error=self.first_error,
            engine_wall=LatencyStats.from_ns(self.engine_ns),
            queue_wait=LatencyStats.from_ns(self.queue_ns),
        )


def _timed(run_once: harness.RunOnce, n: int, pause_s: float, into: _Samples) -> None:
    for _ in range(n):
        if pause_s:
            time.sleep(pause_s)
        start = time.perf_counter_ns()
        attempt = run_once()
        elapsed = time.perf_counter_ns() - start
        into.cold += attempt.cold_start
        if not attempt.ok:
            into.failures += 1
            into.first_error = into.first_error or attempt.error
            continue
        into.ns.append(elapsed)
        if attempt.engine_wall_us is not None:
            into.engine_ns.append(attempt.engine_wall_us * 1000)
        if attempt.queue_wait_us is not None:
            into.queue_ns.append(attempt.queue_wait_us * 1000)


def interleaved_latency(
    runners: dict[str, harness.RunOnce],
    iterations: int,
    warmup: int,
    rounds: int,
    pause_s: float,
) -> dict[str, LatencyRun]:
    """Sequential latency of each runner, in `rounds` alternating chunks of the iterations."""
    for run_once in runners.values():
        _timed(run_once, warmup, pause_s, _Samples())
    samples = {name: _Samples() for name in runners}
    names = list(runners)
    per_round = [iterations // rounds + (i < iterations % rounds) for i in range(rounds)]
    for i, n in enumerate(per_round):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            _timed(runners[name], n, pause_s, samples[name])
    return {name: s.run() for name, s in samples.items()}


def bare_runner(scenario: Scenario, runtimes: dict[str, BenchRuntime]) -> harness.RunOnce | None:
    """A bare spawn of a hello scenario's interpreter (the throughput targets' baseline), or
    None for the other scenarios."""
    runtime = runtimes.get(scenario.runtime)
    if runtime is None or not scenario.key.endswith("-hello"):
        return None
    return baselines.spawn_runner(runtime.code_argv(scenario.code), scenario.expected_stdout)


def measure_scenario(
    scenario: Scenario,
    clients: dict[str, ClientSet],
    settings: Settings,
    bare: harness.RunOnce | None = None,
    bare_runs: dict[tuple[str, int], ThroughputRun] | None = None,
) -> dict[str, TargetResult]:
    """Paced latency and each load level on every server; with `bare`, also bare spawns at the
    thread counts of the throughput targets, right after the servers' runs (into bare_runs)."""
    call = execute_call(scenario)
    results = {t: TargetResult() for t in clients}
    live = []
    for target, cs in clients.items():
        probe = cs.per_thread(call)()
        if probe.ok:
            live.append(target)
        else:
            results[target].skipped = f"does not run: {probe.error}"
            log(f"  {scenario.key:13} {target:6} skipped: {probe.error}")
    pause_s = PAUSE_MS.get(scenario.runtime, 50.0) / 1000
    log(f"  {scenario.key:13} paced latency ({settings.iterations} runs each, interleaved)...")
    paced = interleaved_latency(
        {t: clients[t].per_thread(call) for t in live},
        settings.iterations,
        settings.warmup,
        settings.rounds,
        pause_s,
    )
    for t, run in paced.items():
        results[t].paced = run
    for i, threads in enumerate(settings.thread_counts):
        order = live if i % 2 == 0 else live[::-1]
        for t in order:
            time.sleep(pause_s * 5)  # let the pool refill between runs, as the paced calls do
            log(f"  {scenario.key:13} {t:6} x{threads} for {settings.duration_s:g} s...")
            results[t].loads[threads] = harness.measure_throughput(
                clients[t].per_thread(call), threads, settings.duration_s
            )
        if bare is not None and bare_runs is not None and threads in THROUGHPUT_THREADS:
            log(f"  {scenario.key:13} bare   x{threads} for {settings.duration_s:g} s...")
            bare_run = harness.measure_throughput(bare, threads, settings.duration_s)
            bare_runs[(scenario.key, threads)] = bare_run
            log(f"  {scenario.key:13} bare   x{threads} {bare_run.per_s:.0f}/s")
    for t in live:
        r = results[t]
        brief = []
        if r.paced and r.paced.stats:
            brief.append(f"paced p50 {r.paced.stats.p50_ms:.2f} p99 {r.paced.stats.p99_ms:.2f} ms")
        for threads, load in sorted(r.loads.items()):
            p50 = f" p50 {load.latency.p50_ms:.1f} ms" if load.latency else ""
            brief.append(f"x{threads} {load.per_s:.0f}/s{p50}")
        log(f"  {scenario.key:13} {t:6} " + ", ".join(brief))
    return results


# -- the command ---------------------------------------------------------------------------


def engine_state() -> str:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", "pool", "sandboxd", "client")
    state = "uncommitted changes in pool/, sandboxd/ or client/" if dirty else "clean"
    return f"daemon and engine from this checkout at {commit} ({state})"


@contextlib.contextmanager
def running_servers(
    settings: Settings, python: str, node: str | None, notes: list[str]
) -> Iterator[dict[str, ServerProcess]]:
    servers: dict[str, ServerProcess] = {}
    try:
        log(f"starting sandboxd serve (--warm-workers {settings.warm_workers})...")
        started = time.monotonic()
        servers["daemon"] = start_daemon(settings.warm_workers, python, node)
        log(
            f"  daemon listening on {servers['daemon'].address} after "
            f"{time.monotonic() - started:.2f} s"
        )
        log("starting the bwrap-backed servicer...")
        servers["bwrap"] = start_bwrap_server(python, node)
        log(f"  bwrap server listening on {servers['bwrap'].address}")
        time.sleep(SETTLE_S)
        yield servers
    finally:
        for name, server in servers.items():
            rc = server.stop()
            log(f"stopped {name} (exit {rc})")
            if rc != 0:
                notes.append(f"{name} server exited {rc} on SIGTERM")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    runtimes = select_runtimes(args.runtimes, python=args.python, node=args.node)
    names = [rt.name for rt in runtimes]
    python = next((rt.interpreter for rt in runtimes if rt.name == "python"), None)
    if python is None:
        python = select_runtimes(["python"], python=args.python)[0].interpreter
    node = next((rt.interpreter for rt in runtimes if rt.name == "javascript"), None)
    command = "python -m bench " + " ".join(sys.argv[1:])
    log(f"bench e2e: runtimes {', '.join(names)}; {settings}")
    machine = machine_info(runtimes)
    machine["engine"] = engine_state()
    notes: list[str] = []
    if shutil.which("bwrap") is None:
        notes.append("bwrap is not installed (apt-get install bubblewrap): no bwrap numbers")
    chosen = scenarios(names)
    results: dict[tuple[str, str], TargetResult] = {}
    floor: dict[str, LatencyRun] = {}
    floor_paced: dict[str, LatencyRun] = {}
    bare: dict[tuple[str, int], ThroughputRun] = {}
    by_name = {rt.name: rt for rt in runtimes}
    echo = []

    max_threads = max([*settings.thread_counts, 1])
    try:
        with running_servers(settings, python, node, notes) as servers:
            clients = {t: ClientSet(servers[t].address, max_threads) for t in TARGETS}
            try:
                for cs in clients.values():  # connect every channel before timing anything
                    for c in cs.clients:
                        floor_call(c)
                log(f"gRPC floor ({settings.floor_iterations} runs each, interleaved)...")
                floor = interleaved_latency(
                    {t: cs.per_thread(floor_call) for t, cs in clients.items()},
                    settings.floor_iterations,
                    settings.warmup,
                    settings.rounds,
                    0.0,
                )
                floor_paced = interleaved_latency(
                    {t: cs.per_thread(floor_call) for t, cs in clients.items()},
                    settings.floor_iterations,
                    settings.warmup,
                    settings.rounds,
                    FLOOR_PAUSE_MS / 1000,
                )
                for scenario in chosen:
                    log(f"{scenario.title}...")
                    measured = measure_scenario(
                        scenario, clients, settings, bare_runner(scenario, by_name), bare
                    )
                    for t, r in measured.items():
                        results[(scenario.key, t)] = r
            finally:
                for cs in clients.values():
                    cs.close()
        if settings.echo:
            from bench.e2e import echo as e2e_echo

            log("sync vs aio gRPC echo...")
            try:
                echo = e2e_echo.measure(settings.iterations, settings.rounds)
            except Exception as exc:  # optional extra: report, never stop
                traceback.print_exc()
                notes.append(f"sync vs aio echo not measured: {type(exc).__name__}: {exc}")
    except Exception as exc:
        traceback.print_exc()
        notes.append(f"run aborted: {type(exc).__name__}: {exc}")

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    notes.append(
        f"Load average at end: {load}. The x8 runs keep 8 client threads and the servers' "
        "work runnable on this VM; a start value well above 0 means other work competed."
    )
    report = E2EReport(
        command=command,
        machine=machine,
        scenarios=[(s.key, s.title) for s in chosen],
        thread_counts=settings.thread_counts,
        iterations=settings.iterations,
        duration_s=settings.duration_s,
        pause_ms={rt: PAUSE_MS[rt] for rt in names if rt in PAUSE_MS},
        warm_workers=settings.warm_workers,
        results=results,
        floor=floor,
        floor_paced=floor_paced,
        floor_pause_ms=FLOOR_PAUSE_MS,
        echo=echo,
        bare=bare,
        checks=evaluate(results, bare),
        notes=notes,
    )
    output.publish(args, "e2e", render(report), report)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(
        parser,
        SCALE,
        iterations="paced sequential calls per scenario and server",
        duration="seconds per concurrency level",
        threads="concurrent clients",
        warm_workers="the daemon's --warm-workers",
    )
    parser.add_argument(
        "--no-echo",
        dest="echo",
        action="store_false",
        help="skip the sync-vs-aio gRPC echo measurement (always skipped with --quick)",
    )
    output.add_arguments(parser)
