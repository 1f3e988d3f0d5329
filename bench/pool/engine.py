"""Drive the engine (`sandboxd_pool.Pool`) the way the baselines are driven.

Latency is end to end as the embedding caller sees it: the wall time of
`pool.execute(request)` in this process. Warm latency waits, untimed, before every call
until the pool reports all its warm workers ready, so each timed call is a dispatch to
an idle, pre-faulted worker; the back-to-back run does not wait and shows what a caller
gets while the replenisher is still refilling.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common.runtimes import BenchRuntime
from bench.common.stats import Attempt

READY_POLL_S = 0.002
POOL_DIR = Path(__file__).resolve().parents[2] / "pool"


REQUIRED = ("Pool", "PoolConfig", "ExecutionRequest", "Runtime", "Verdict")


def _import_engine() -> tuple[ModuleType | None, str]:
    try:
        module = importlib.import_module("sandboxd_pool")
    except Exception as exc:  # any failure means "engine not usable yet"
        return None, f"cannot import sandboxd_pool: {type(exc).__name__}: {exc}"
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        where = getattr(module, "__file__", None) or list(getattr(module, "__path__", []))
        return None, f"sandboxd_pool ({where}) lacks {', '.join(missing)}"
    return module, ""


def _forget_engine() -> None:
    for name in [m for m in sys.modules if m == "sandboxd_pool" or m.startswith("sandboxd_pool.")]:
        del sys.modules[name]


def _import_from(pool_dir: Path) -> tuple[ModuleType | None, str]:
    _forget_engine()
    if str(pool_dir) in sys.path:
        sys.path.remove(str(pool_dir))
    sys.path.insert(0, str(pool_dir))
    return _import_engine()


def export_engine(commit: str) -> tuple[Path | None, str]:
    """`git archive <commit> pool` into a temporary directory: the engine as committed.

    Lets a run measure a known engine revision while pool/ is being edited in the checkout.
    Returns (the directory holding the `sandboxd_pool` package, "") or (None, why not).
    """
    # Not under /tmp: the engine cannot currently boot workers from a package under /tmp.
    target = Path(tempfile.mkdtemp(prefix="sandboxd-bench-engine-", dir="/var/tmp"))
    atexit.register(shutil.rmtree, target, True)
    try:
        archive = subprocess.run(
            ["git", "-C", str(POOL_DIR.parent), "archive", commit, "pool"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot export pool/ at {commit}: {exc}"
    return target / "pool", ""


def resolve_commit(rev: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(POOL_DIR.parent), "rev-parse", "--short", rev],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return rev


def load_engine(pool_dir: Path | None = None) -> tuple[ModuleType | None, str]:
    """(the sandboxd_pool module, "") or (None, why it cannot be used).

    With `pool_dir`, the engine is imported from there; otherwise the installed one, and
    failing that the checkout's pool/ (as `pip install -e pool` would provide it).
    """
    if pool_dir is not None:
        return _import_from(pool_dir)
    module, why = _import_engine()
    if module is not None:
        return module, ""
    if POOL_DIR.is_dir():
        module, why = _import_from(POOL_DIR)
    return module, why


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


@dataclass(frozen=True)
class RuntimeReadiness:
    ready_workers: int
    healthy: bool
    reason: str


def readiness(pool: Any) -> dict[Any, RuntimeReadiness]:
    """{engine Runtime: readiness} from pool.health(), whatever shape it returns."""
    health = pool.health()
    if isinstance(health, dict):
        items = health.values()
    elif hasattr(health, "runtimes"):
        runtimes = health.runtimes
        items = runtimes.values() if isinstance(runtimes, dict) else runtimes
    else:
        items = health
    return {
        item.runtime: RuntimeReadiness(
            ready_workers=int(item.ready_workers),
            healthy=bool(getattr(item, "healthy", True)),
            reason=str(getattr(item, "reason", "")),
        )
        for item in items
    }


def describe_readiness(pool: Any) -> str:
    parts = []
    for runtime, state in readiness(pool).items():
        name = getattr(runtime, "value", str(runtime))
        text = f"{name} {state.ready_workers} ready"
        if not state.healthy:
            text += f" (unhealthy: {state.reason})"
        parts.append(text)
    return ", ".join(parts)


def wait_until_ready(pool: Any, runtimes: list[Any], count: int, timeout_s: float) -> bool:
    """Poll health until every healthy runtime has `count` ready workers.

    An unhealthy runtime is not waited for (its boots keep failing; waiting would only
    burn the timeout on every call). True when all of `runtimes` are full, False otherwise.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        states = readiness(pool)
        full = [rt in states and states[rt].ready_workers >= count for rt in runtimes]
        settled = [
            ok or (rt in states and not states[rt].healthy)
            for rt, ok in zip(runtimes, full, strict=True)
        ]
        if all(full):
            return True
        if all(settled) or time.monotonic() >= deadline:
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
