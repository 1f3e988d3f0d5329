"""Drive the engine (`sandboxd_pool.Pool`) the way the baselines are driven.

Latency is end to end as the embedding caller sees it: the wall time of
`pool.execute(request)` in this process. Warm latency waits, untimed, before every call
until the pool reports all its warm workers ready, so each timed call is a dispatch to
an idle, pre-faulted worker; the back-to-back run does not wait and shows what a caller
gets while the replenisher is still refilling.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.runtimes import BenchRuntime
from bench.stats import Attempt

READY_POLL_S = 0.002
POOL_DIR = Path(__file__).resolve().parent.parent / "pool"


def load_engine() -> tuple[ModuleType | None, str]:
    """(the sandboxd_pool module, "") or (None, why it cannot be used)."""
    try:
        return importlib.import_module("sandboxd_pool"), ""
    except ImportError:
        pass
    # Not installed: use the checkout's copy (same as `pip install -e pool`).
    if POOL_DIR.is_dir() and str(POOL_DIR) not in sys.path:
        sys.path.insert(0, str(POOL_DIR))
    try:
        module = importlib.import_module("sandboxd_pool")
    except Exception as exc:  # any failure means "engine not usable yet"
        return None, f"cannot import sandboxd_pool: {type(exc).__name__}: {exc}"
    missing = [
        name
        for name in ("Pool", "PoolConfig", "ExecutionRequest", "Runtime")
        if not hasattr(module, name)
    ]
    if missing:
        return None, f"sandboxd_pool lacks {', '.join(missing)}"
    return module, ""


def engine_runtime(engine: ModuleType, runtime: BenchRuntime) -> Any:
    return engine.Runtime(runtime.name)


def make_config(
    engine: ModuleType, warm_workers: int, max_concurrent: int, runtimes: list[Any]
) -> Any:
    """A PoolConfig with the fields this engine version knows about."""
    wanted: dict[str, Any] = {
        "warm_workers_per_runtime": warm_workers,
        "max_concurrent_executions": max_concurrent,
    }
    fields = {f.name for f in dataclasses.fields(engine.PoolConfig)}
    if "runtimes" in fields:
        wanted["runtimes"] = tuple(runtimes)
    return engine.PoolConfig(**{k: v for k, v in wanted.items() if k in fields})


@contextmanager
def open_pool(
    engine: ModuleType, warm_workers: int, max_concurrent: int, runtimes: list[Any]
) -> Iterator[Any]:
    config = make_config(engine, warm_workers, max_concurrent, runtimes)
    with engine.Pool(config) as pool:
        yield pool


def ready_workers(pool: Any) -> dict[Any, int]:
    """{engine Runtime: ready worker count} from pool.health(), whatever shape it returns."""
    health = pool.health()
    if isinstance(health, dict):
        items = health.values()
    elif hasattr(health, "runtimes"):
        runtimes = health.runtimes
        items = runtimes.values() if isinstance(runtimes, dict) else runtimes
    else:
        items = health
    return {item.runtime: int(item.ready_workers) for item in items}


def wait_until_ready(pool: Any, runtimes: list[Any], count: int, timeout_s: float) -> bool:
    """Poll health until every runtime has `count` ready workers. False on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = ready_workers(pool)
        if all(ready.get(rt, 0) >= count for rt in runtimes):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(READY_POLL_S)


def pool_runner(engine: ModuleType, pool: Any, runtime: BenchRuntime) -> Callable[[], Attempt]:
    request = engine.ExecutionRequest(
        runtime=engine_runtime(engine, runtime), code=runtime.hello_code
    )
    ok_verdict = engine.Verdict.OK

    def run_once() -> Attempt:
        try:
            outcome = pool.execute(request)
        except Exception as exc:  # the benchmark records, never stops
            return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
        usage = getattr(outcome, "usage", None)
        wall_us = getattr(usage, "wall_time_us", None)
        queue_us = getattr(outcome, "queue_wait_us", None)
        cold = bool(getattr(outcome, "cold_start", False))
        if outcome.verdict != ok_verdict or outcome.stdout != runtime.expected_stdout:
            stderr = outcome.stderr.decode(errors="replace").strip().splitlines()
            detail = stderr[-1] if stderr else repr(outcome.stdout[:60])
            return Attempt(
                ok=False,
                cold_start=cold,
                error=f"{outcome.verdict.value}: {detail}"[:200],
            )
        return Attempt(ok=True, cold_start=cold, engine_wall_us=wall_us, queue_wait_us=queue_us)

    return run_once
