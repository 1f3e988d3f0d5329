"""The warm pool itself: single use, refill, boot failures, concurrency, request validation,
close() and a crashing zygote."""

from __future__ import annotations

import glob
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from helpers import run

from sandboxd_pool import (
    CEILING_LIMITS,
    ExecutionRequest,
    InvalidRequest,
    Limits,
    Outcome,
    Pool,
    PoolClosed,
    PoolConfig,
    Runtime,
    RuntimeUnavailable,
    Verdict,
)
from sandboxd_pool.worker import ZYGOTE_DIED_MESSAGE

PY = Runtime.PYTHON
JS = Runtime.JAVASCRIPT
HELLO = {PY: "print('hello')", JS: "console.log('hello')"}


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def gone(pid: int) -> bool:
    """The process no longer runs (it is reaped, or a zombie waiting to be)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def hello_ok(pool: Pool, runtime: Runtime) -> Outcome:
    out = run(pool, runtime, HELLO[runtime])
    assert out.verdict is Verdict.OK, out
    assert out.stdout == b"hello\n", out
    return out


def worker_cgroups(zygote_pid: int) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/sandboxd/z{zygote_pid}-*") + glob.glob(
        f"/sys/fs/cgroup/sandboxd/z{zygote_pid}-*"
    )


@pytest.fixture
def private_pool() -> Iterator[Pool]:
    with Pool(PoolConfig(warm_workers_per_runtime=1, max_concurrent_executions=4)) as p:
        assert p.wait_until_ready(30), p.health()
        yield p


# -- single use -----------------------------------------------------------------------------


def test_no_worker_serves_twice(pool: Pool) -> None:
    used: dict[Runtime, set[int]] = {PY: set(), JS: set()}
    for _ in range(3 * pool.config.warm_workers_per_runtime):
        for runtime in (PY, JS):
            # Full pool before each execution: it takes exactly one of these workers.
            assert pool.wait_until_ready(30), pool.health()
            before = set(pool.worker_pids()[runtime])
            assert not before & used[runtime], "a used worker is back in the ready queue"
            out = hello_ok(pool, runtime)
            assert not out.cold_start
            taken = before - set(pool.worker_pids()[runtime])
            assert len(taken) == 1, (before, pool.worker_pids())
            used[runtime] |= taken
    assert pool.wait_until_ready(30)
    for runtime in (PY, JS):
        assert len(used[runtime]) == 3 * pool.config.warm_workers_per_runtime
        assert not set(pool.worker_pids()[runtime]) & used[runtime]
        # A used worker is destroyed, not parked.
        assert wait_for(lambda rt=runtime: all(gone(p) for p in used[rt]), 3.0)


# -- refill ---------------------------------------------------------------------------------


def kill_ready_workers(pool: Pool) -> set[int]:
    killed = set()
    for pids in pool.worker_pids().values():
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    assert killed
    assert wait_for(lambda: all(gone(p) for p in killed), 3.0)
    return killed


def test_killed_ready_workers_are_replaced_without_traffic() -> None:
    with Pool(PoolConfig(warm_workers_per_runtime=2)) as p:
        assert p.wait_until_ready(30), p.health()
        killed = kill_ready_workers(p)

        def refilled() -> bool:
            pids = p.worker_pids()
            return all(
                len(ps) == 2 and not set(ps) & killed and not any(gone(x) for x in ps)
                for ps in pids.values()
            )

        # Dead workers are reaped and replaced by the replenisher, not listed as ready.
        assert wait_for(refilled, 5.0), p.worker_pids()
        health = p.health()
        for runtime in (PY, JS):
            assert health[runtime].healthy
            assert health[runtime].ready_workers == 2
            assert health[runtime].consecutive_boot_failures == 0


def test_executions_succeed_after_ready_workers_are_killed() -> None:
    with Pool(PoolConfig(warm_workers_per_runtime=2)) as p:
        assert p.wait_until_ready(30), p.health()
        killed = kill_ready_workers(p)
        for _ in range(3):
            for runtime in (PY, JS):
                hello_ok(p, runtime)
        assert p.wait_until_ready(10), p.health()
        for runtime, pids in p.worker_pids().items():
            assert len(pids) == 2, runtime
            assert not set(pids) & killed
            assert not any(gone(x) for x in pids)


# -- boot failures --------------------------------------------------------------------------


def broken_runtime_config(broken: Runtime) -> PoolConfig:
    path = {PY: "python_path", JS: "node_path"}[broken]
    binary = {PY: "/nonexistent/python3", JS: "/nonexistent/node"}[broken]
    return PoolConfig(
        warm_workers_per_runtime=1,
        max_boot_failures=2,
        unhealthy_retry_ms=5_000,
        boot_timeout_ms=5_000,
        **{path: binary},  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("broken", [PY, JS], ids=["python-broken", "javascript-broken"])
def test_boot_failure_marks_only_that_runtime_unhealthy(
    broken: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sandboxd_pool")
    other = JS if broken is PY else PY
    binary = "/nonexistent/python3" if broken is PY else "/nonexistent/node"
    with Pool(broken_runtime_config(broken)) as p:
        assert wait_for(lambda: not p.health()[broken].healthy, 10.0), p.health()
        health = p.health()[broken]
        assert health.ready_workers == 0
        assert binary in health.reason or "No such file" in health.reason, health
        assert health.consecutive_boot_failures >= 2

        with pytest.raises(RuntimeUnavailable) as info:
            run(p, broken, HELLO[broken])
        assert info.value.runtime == broken.value
        assert binary in info.value.reason or "No such file" in info.value.reason

        # The other runtime of the same pool is unaffected.
        assert p.wait_until_ready(10) is False  # not every runtime can be full
        hello_ok(p, other)
        assert p.health()[other].healthy

        # No hot respawn loop: over 2 s, at most a retry or so.
        failures = p.health()[broken].consecutive_boot_failures
        boots_logged = caplog.text.count("failed to boot")
        time.sleep(2.0)
        assert p.health()[broken].consecutive_boot_failures <= failures + 1
        assert caplog.text.count("failed to boot") <= boots_logged + 1
        assert p.health()[broken].consecutive_boot_failures <= 4


# -- concurrency ----------------------------------------------------------------------------

CONCURRENT = {
    PY: "import sys, time\ndata = sys.stdin.read()\ntime.sleep(0.05)\nprint(data[::-1], sys.argv[1])",
    JS: "const d = require('fs').readFileSync(0, 'utf8');\n"
    "setTimeout(() => console.log([...d].reverse().join(''), process.argv[2]), 50);",
}


def test_concurrent_executions_from_16_threads(pool: Pool) -> None:
    def one(i: int) -> tuple[int, Outcome]:
        runtime = PY if i % 2 else JS
        payload = f"payload-{i:03d}-" + "x" * (i * 97)
        out = run(pool, runtime, CONCURRENT[runtime], stdin=payload.encode(), args=(str(i),))
        return i, out

    with ThreadPoolExecutor(max_workers=16) as ex:
        results = list(ex.map(one, range(32)))
    assert len(results) == 32
    for i, out in results:
        payload = f"payload-{i:03d}-" + "x" * (i * 97)
        assert out.verdict is Verdict.OK, (i, out)
        assert out.stdout == f"{payload[::-1]} {i}\n".encode(), i
        assert out.stderr == b""
    assert len({out.execution_id for _, out in results}) == 32


# -- invalid requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"files": {"/etc/passwd": b"x"}}, "files['/etc/passwd']"),
        ({"files": {"../escape.txt": b"x"}}, "files['../escape.txt']"),
        ({"files": {"a/../../escape.txt": b"x"}}, "files['a/../../escape.txt']"),
        (
            {"limits": Limits(memory_bytes=CEILING_LIMITS.memory_bytes + 1)},
            "limits.memory_bytes",
        ),
        (
            {"limits": Limits(wall_time_ms=CEILING_LIMITS.wall_time_ms + 1)},
            "limits.wall_time_ms",
        ),
        ({"code": "#" * (4 * 1024 * 1024 + 1)}, "code"),
        ({"args": ("ok", "nul\x00inside")}, "args[1]"),
        ({"env": {"K": "nul\x00"}}, "env['K']"),
    ],
    ids=[
        "absolute-path",
        "dotdot-path",
        "nested-dotdot-path",
        "memory-above-ceiling",
        "wall-above-ceiling",
        "code-too-big",
        "nul-in-args",
        "nul-in-env",
    ],
)
def test_invalid_request_names_the_field_and_runs_nothing(
    pool: Pool, fields: dict[str, object], field: str
) -> None:
    assert pool.wait_until_ready(30)
    before = pool.worker_pids()
    request = ExecutionRequest(**{"runtime": PY, "code": "print(1)", **fields})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as info:
        pool.execute(request)
    assert info.value.field == field
    assert pool.worker_pids() == before  # no worker was taken


def test_code_at_max_code_bytes_is_accepted() -> None:
    config = PoolConfig(warm_workers_per_runtime=1, runtimes=(PY,), max_code_bytes=64)
    with Pool(config) as p:
        code = "print('ok')" + " " * (64 - len("print('ok')"))
        assert run(p, PY, code).stdout == b"ok\n"
        with pytest.raises(InvalidRequest) as info:
            run(p, PY, code + " ")
        assert info.value.field == "code"


# -- close ----------------------------------------------------------------------------------


def test_close_leaves_nothing_behind() -> None:
    p = Pool(PoolConfig(warm_workers_per_runtime=1, max_concurrent_executions=4))
    with p:
        assert p.wait_until_ready(30), p.health()
        zygote = p.zygote_pid
        pids = {pid for ps in p.worker_pids().values() for pid in ps}
        for runtime in (PY, JS):
            hello_ok(p, runtime)
        assert p.wait_until_ready(30)
        pids |= {pid for ps in p.worker_pids().values() for pid in ps}
        assert psutil.pid_exists(zygote)
        assert worker_cgroups(zygote), "ready workers should have cgroups (else the check is moot)"
    for pid in (zygote, *pids):
        assert not psutil.pid_exists(pid) or gone(pid), pid
    assert not psutil.pid_exists(zygote)
    assert worker_cgroups(zygote) == []
    assert not [c for c in psutil.Process().children(recursive=True) if c.pid == zygote]
    health = p.health()
    assert all(not h.healthy for h in health.values())
    with pytest.raises(PoolClosed):
        run(p, PY, HELLO[PY])
    with pytest.raises(PoolClosed):
        run(p, JS, HELLO[JS])
    p.close()  # closing twice is harmless


def test_close_waits_for_in_flight_work() -> None:
    p = Pool(PoolConfig(warm_workers_per_runtime=1, runtimes=(PY,)))
    assert p.wait_until_ready(30)
    result: dict[str, Outcome] = {}

    def slow() -> None:
        result["out"] = run(p, PY, "import time\ntime.sleep(0.5)\nprint('finished')")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.15)
    p.close(grace_s=10)
    t.join(timeout=10)
    assert not t.is_alive()
    assert result["out"].verdict is Verdict.OK, result["out"]
    assert result["out"].stdout == b"finished\n"


# -- zygote crash ---------------------------------------------------------------------------


def test_zygote_crash_is_survived(private_pool: Pool) -> None:
    p = private_pool
    old_zygote = p.zygote_pid
    results: dict[Runtime, Outcome | BaseException] = {}
    started = {rt: threading.Event() for rt in (PY, JS)}

    def in_flight(runtime: Runtime) -> None:
        code = {
            PY: "import time\nprint('started', flush=True)\ntime.sleep(60)\nprint('done')",
            JS: "console.log('started'); setTimeout(() => console.log('done'), 60000);",
        }[runtime]
        try:
            results[runtime] = p.execute(
                ExecutionRequest(runtime=runtime, code=code, limits=Limits(wall_time_ms=90_000)),
                on_output=lambda _stream, _chunk: started[runtime].set(),
            )
        except BaseException as e:
            results[runtime] = e

    threads = [threading.Thread(target=in_flight, args=(rt,)) for rt in (PY, JS)]
    for t in threads:
        t.start()
    # both programs run (they said so) when the zygote dies: no guess at how long that takes
    for runtime in (PY, JS):
        assert started[runtime].wait(60), (runtime, results.get(runtime))
    os.kill(old_zygote, signal.SIGKILL)
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "in-flight executions hung"
    for runtime, out in results.items():
        assert isinstance(out, Outcome), (runtime, out)
        assert out.verdict is Verdict.INTERNAL_ERROR, (runtime, out)
        assert (out.stdout, out.stderr) == (b"started\n", ZYGOTE_DIED_MESSAGE), (runtime, out)
        assert (out.exit_code, out.signal) == (None, None), (runtime, out)

    # A new zygote takes over within a few seconds and executions succeed again.
    def recovered() -> bool:
        try:
            return all(run(p, rt, HELLO[rt]).verdict is Verdict.OK for rt in (PY, JS))
        except RuntimeUnavailable:
            return False

    assert wait_for(recovered, 8.0), p.health()
    assert p.zygote_pid != old_zygote
    assert not psutil.pid_exists(old_zygote) or gone(old_zygote)
    for _ in range(3):
        for runtime in (PY, JS):
            hello_ok(p, runtime)
    health = p.health()
    assert all(h.healthy for h in health.values()), health
    # The dead zygote's worker cgroups are swept.
    assert wait_for(lambda: worker_cgroups(old_zygote) == [], 5.0), worker_cgroups(old_zygote)


def test_idle_zygote_crash_is_survived(private_pool: Pool) -> None:
    p = private_pool
    old_zygote = p.zygote_pid
    old_workers = {pid for ps in p.worker_pids().values() for pid in ps}
    os.kill(old_zygote, signal.SIGKILL)
    # Its workers die with it (parent-death signal) and are not handed out.
    assert wait_for(lambda: all(gone(x) for x in old_workers), 3.0)
    assert wait_for(lambda: p.zygote_pid != old_zygote, 5.0)
    for runtime in (PY, JS):
        hello_ok(p, runtime)
    assert p.wait_until_ready(10), p.health()
    assert not {pid for ps in p.worker_pids().values() for pid in ps} & old_workers
