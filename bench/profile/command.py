"""`python -m bench profile`: one Python and one Node hello, stage by stage, embedded and over
gRPC, p50/p90 per stage.

Order: wrap the engine's methods in this process (hooks.py; a missing one stops the command
with its name) → open a Pool → per runtime: paced hellos, each recorded → close it → start
`sandboxd serve` through `python -m bench.profile.daemon` (the same hooks, plus the request's
decoding and the response's encoding) → per runtime: paced `Client.execute` hellos → stop it,
read its records → report (terminal, and the "Per-stage profile" section of
bench/RESULTS.md). Any stage that no execution recorded stops the command naming the method
that should have recorded it; a profile never leaves a stage out silently.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import output
from bench.common.machine import engine_source, machine_info
from bench.common.options import _names
from bench.common.output import log
from bench.common.runtimes import BenchRuntime, select_runtimes
from bench.common.servers import ServerFailed, start_daemon
from bench.pool import engine as pool_bench
from bench.profile.hooks import (
    ENGINE_HOOKS,
    SERVICER_HOOKS,
    HookMissing,
    Recorder,
    hook_of,
    install,
)
from bench.profile.report import ProfileReport, render, source_of
from bench.profile.stages import Profile, StageMissing, summarize
from sandboxd_client import NO_RETRY, Client, Verdict

PAUSE_MS = {"python": 50.0, "javascript": 80.0}
REFILL_TIMEOUT_S = 10.0
RPC_TIMEOUT_S = 60.0
SETTLE_S = 2.0
# The program reads the clock first thing and prints it (Node also when its `exit` event
# fires: the rest of the exit is V8's and the process's teardown).
PROGRAMS = {
    "python": "import time; print(time.monotonic())",
    "javascript": (
        "const t = process.hrtime.bigint();"
        " process.on('exit', () => { process.stdout.write(String(process.hrtime.bigint()) + '\\n'); });"
        " console.log(String(t));"
    ),
}
LABELS = {"python": "Python", "javascript": "Node"}


class ProfileFailed(RuntimeError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--iterations", type=int, default=0, help="recorded executions per path (200; 30 --quick)"
    )
    parser.add_argument(
        "--runtimes",
        type=_names,
        default=["python", "javascript"],
        help="comma-separated: python,javascript (default both)",
    )
    parser.add_argument("--warm-workers", type=int, default=4, help="warm workers per runtime (4)")
    parser.add_argument("--skip-grpc", action="store_true", help="the embedded pool only")
    parser.add_argument("--python", help="Python interpreter (default: this one's real binary)")
    parser.add_argument("--node", help="Node interpreter (default: node on PATH)")
    output.add_arguments(parser)


def program_marks(runtime: str, stdout: bytes) -> dict[str, float]:
    """The program's own timestamps from its output (CLOCK_MONOTONIC seconds)."""
    lines = stdout.decode(errors="replace").split()
    try:
        if runtime == "python":
            return {"user_start": float(lines[0])}
        marks = {"user_start": int(lines[0]) / 1e9}
        if len(lines) > 1:
            marks["exit_event"] = int(lines[1]) / 1e9
        return marks
    except (IndexError, ValueError) as exc:
        raise ProfileFailed(
            f"the {runtime} program printed {stdout[:80]!r}, not its clock"
        ) from exc


def _summarize(title: str, timelines: list[dict[str, float]], grpc: bool, node: bool) -> Profile:
    try:
        return summarize(title, timelines, grpc=grpc, node=node)
    except StageMissing as exc:
        raise ProfileFailed(
            f"{title}: no timestamp '{exc}' on an execution's path: {source_of(str(exc))} did "
            "not run during the call (the engine changed: update bench/profile/hooks.py)"
        ) from exc


# -- embedded ------------------------------------------------------------------------------


def embedded(
    runtimes: list[BenchRuntime], iterations: int, warmup: int, warm_workers: int
) -> list[Profile]:
    engine, why = pool_bench.load_engine()
    if engine is None:
        raise ProfileFailed(f"no engine: {why}")
    recorder = Recorder()
    install(ENGINE_HOOKS, recorder)
    engine_runtimes = [pool_bench.engine_runtime(engine, rt) for rt in runtimes]
    profiles = []
    with pool_bench.open_pool(engine, warm_workers, 2, engine_runtimes) as pool:
        if not pool_bench.wait_until_ready(pool, engine_runtimes, warm_workers, 120):
            raise ProfileFailed(f"the pool did not boot: {pool_bench.describe_readiness(pool)}")
        for rt, engine_rt in zip(runtimes, engine_runtimes, strict=True):
            request = engine.ExecutionRequest(runtime=engine_rt, code=PROGRAMS[rt.name])
            timelines = []
            log(f"  embedded {rt.name}: {warmup} + {iterations} executions...")
            for i in range(warmup + iterations):
                time.sleep(PAUSE_MS[rt.name] / 1000)
                pool_bench.wait_until_ready(pool, [engine_rt], warm_workers, REFILL_TIMEOUT_S)
                recorder.arm()
                outcome = pool.execute(request)
                marks = recorder.disarm()
                if outcome.verdict != engine.Verdict.OK:
                    raise ProfileFailed(f"embedded {rt.name}: {outcome.verdict} {outcome.stderr!r}")
                if i >= warmup:
                    timelines.append({**marks, **program_marks(rt.name, outcome.stdout)})
            title = f"Embedded pool, {LABELS[rt.name]} hello"
            profiles.append(_summarize(title, timelines, grpc=False, node=rt.name != "python"))
    return profiles


# -- over gRPC -----------------------------------------------------------------------------


def _client_calls(
    address: str, runtime: BenchRuntime, count: int
) -> list[tuple[str, dict[str, float]]]:
    """(execution id, the client's and the program's timestamps) of `count` paced calls."""
    calls = []
    with Client(address, retry=NO_RETRY) as client:
        for _ in range(count):
            time.sleep(PAUSE_MS[runtime.name] / 1000)
            began = time.monotonic()
            r = client.execute(runtime.name, PROGRAMS[runtime.name], timeout_s=RPC_TIMEOUT_S)
            done = time.monotonic()
            if r.verdict is not Verdict.OK:
                raise ProfileFailed(f"gRPC {runtime.name}: {r.verdict.value} {r.stderr!r}")
            marks = {"client_call": began, "client_done": done}
            calls.append((r.execution_id, {**marks, **program_marks(runtime.name, r.stdout)}))
    return calls


def _daemon_records(path: Path) -> dict[str, dict[str, float]]:
    records = {}
    for line in path.read_text().splitlines():
        entry: dict[str, Any] = json.loads(line)
        records[str(entry["execution_id"])] = {k: float(v) for k, v in entry["marks"].items()}
    return records


def over_grpc(
    runtimes: list[BenchRuntime], iterations: int, warmup: int, warm_workers: int
) -> list[Profile]:
    python = next((rt.interpreter for rt in runtimes if rt.name == "python"), sys.executable)
    node = next((rt.interpreter for rt in runtimes if rt.name == "javascript"), None)
    with tempfile.TemporaryDirectory(prefix="sandboxd-bench-profile-") as tmp:
        stages_path = Path(tmp) / "stages.jsonl"
        stages_path.touch()
        launcher = ("-m", "bench.profile.daemon", "--stages", str(stages_path))
        try:
            server = start_daemon(
                warm_workers, python, node, name="profiled daemon", launcher=launcher
            )
        except ServerFailed as exc:
            raise ProfileFailed(str(exc)) from exc
        calls: dict[str, list[tuple[str, dict[str, float]]]] = {}
        try:
            time.sleep(SETTLE_S)
            for rt in runtimes:
                log(f"  gRPC {rt.name}: {warmup} + {iterations} executions...")
                calls[rt.name] = _client_calls(server.address, rt, warmup + iterations)[warmup:]
        finally:
            rc = server.stop()
            if rc != 0:
                log(f"the profiled daemon exited {rc}")
        records = _daemon_records(stages_path)
    profiles = []
    for rt in runtimes:
        timelines = []
        for execution_id, marks in calls[rt.name]:
            daemon_marks = records.get(execution_id)
            if daemon_marks is None:
                raise ProfileFailed(
                    f"the profiled daemon recorded nothing for execution {execution_id}: "
                    f"{hook_of('handler', SERVICER_HOOKS)} or the codecs did not run"
                )
            timelines.append({**daemon_marks, **marks})
        title = f"gRPC Execute, {LABELS[rt.name]} hello"
        profiles.append(_summarize(title, timelines, grpc=True, node=rt.name != "python"))
    return profiles


# -- the command ---------------------------------------------------------------------------


def _attempt(what: str, measure: Callable[[], list[Profile]], errors: list[str]) -> list[Profile]:
    try:
        return measure()
    except (ProfileFailed, HookMissing) as exc:
        log(f"{what}: {exc}")
        errors.append(f"{what} not profiled: {exc}")
        return []


def run(args: argparse.Namespace) -> int:
    iterations = args.iterations or (30 if args.quick else 200)
    warmup = max(5, iterations // 10)
    runtimes = select_runtimes(args.runtimes, python=args.python, node=args.node)
    machine = machine_info(runtimes)
    errors: list[str] = []
    log(f"bench profile: {iterations} executions per path, runtimes {args.runtimes}")
    with contextlib.suppress(ImportError):
        import sandboxd_pool

        machine["engine"] = engine_source(sandboxd_pool.__file__)
    profiles = _attempt(
        "embedded", lambda: embedded(runtimes, iterations, warmup, args.warm_workers), errors
    )
    if not args.skip_grpc:
        profiles += _attempt(
            "gRPC", lambda: over_grpc(runtimes, iterations, warmup, args.warm_workers), errors
        )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report = ProfileReport(
        command="python -m bench " + " ".join(sys.argv[1:]),
        machine=machine,
        iterations=iterations,
        pause_ms={rt.name: PAUSE_MS[rt.name] for rt in runtimes},
        warm_workers=args.warm_workers,
        profiles=profiles,
        notes=[
            *errors,
            f"Load average at end: {load} (at start: {machine.get('loadavg at start', '?')}).",
        ],
    )
    if errors:
        # A profile with a stage missing is no profile: say why, record nothing.
        print(render(report))
        for error in errors:
            print(f"bench profile: {error}", file=sys.stderr)
        return 1
    output.publish(args, "profile", render(report), report)
    return 0
