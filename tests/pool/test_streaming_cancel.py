"""Pool.execute's hooks: on_start, on_output (chunks as they are captured) and cancel (while
waiting for a worker or a slot: Cancelled; while running: the worker is killed, KILLED).

Ordering is asserted with events (a callback that cancels the run it observes), not timings.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time

import psutil
import pytest

from sandboxd_pool import (
    Cancelled,
    ExecutionRequest,
    Limits,
    Pool,
    PoolConfig,
    Runtime,
    Started,
    Stream,
    Verdict,
)

PY = Runtime.PYTHON
JS = Runtime.JAVASCRIPT
BOTH = pytest.mark.parametrize("runtime", [PY, JS], ids=["python", "javascript"])

# Prints a first line, then sleeps far longer than any test waits: only a chunk delivered
# while the program still runs can make the callback cancel it (verdict KILLED).
FIRST_THEN_SLEEP = {
    PY: "import sys, time\nprint('first', flush=True)\ntime.sleep(60)\nprint('never')\n",
    JS: "process.stdout.write('first\\n');\nsetTimeout(() => console.log('never'), 60000);\n",
}

TICKS = {
    PY: (
        "import sys, time\n"
        "for i in range(5):\n"
        "    print(f'out {i}', flush=True)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        "    time.sleep(0.02)\n"
    ),
    JS: (
        "let i = 0;\n"
        "const t = setInterval(() => {\n"
        "  process.stdout.write(`out ${i}\\n`);\n"
        "  process.stderr.write(`err ${i}\\n`);\n"
        "  if (++i === 5) clearInterval(t);\n"
        "}, 20);\n"
    ),
}


def request(runtime: Runtime, code: str, limits: Limits | None = None) -> ExecutionRequest:
    return ExecutionRequest(runtime=runtime, code=code, limits=limits or Limits())


@BOTH
def test_chunks_in_order_and_equal_to_the_outcome(pool: Pool, runtime: Runtime) -> None:
    events: list[object] = []

    def on_output(stream: Stream, chunk: bytes) -> None:
        assert isinstance(chunk, bytes) and chunk
        events.append((stream, chunk))

    outcome = pool.execute(
        request(runtime, TICKS[runtime]), on_start=events.append, on_output=on_output
    )
    assert outcome.verdict is Verdict.OK, outcome
    assert isinstance(events[0], Started)
    assert events[0].execution_id == outcome.execution_id
    assert events[0].cold_start == outcome.cold_start
    assert events[0].queue_wait_us == outcome.queue_wait_us
    assert sum(isinstance(e, Started) for e in events) == 1
    chunks = [e for e in events[1:] if isinstance(e, tuple)]
    assert len(chunks) == len(events) - 1
    stdout = b"".join(c for s, c in chunks if s is Stream.STDOUT)
    stderr = b"".join(c for s, c in chunks if s is Stream.STDERR)
    assert stdout == outcome.stdout == b"".join(b"out %d\n" % i for i in range(5))
    assert stderr == outcome.stderr == b"".join(b"err %d\n" % i for i in range(5))


@BOTH
def test_first_chunk_arrives_while_the_program_runs(pool: Pool, runtime: Runtime) -> None:
    cancel = threading.Event()
    seen: list[bytes] = []

    def on_output(stream: Stream, chunk: bytes) -> None:
        seen.append(chunk)
        cancel.set()  # the program is still sleeping: this kills it

    outcome = pool.execute(
        request(runtime, FIRST_THEN_SLEEP[runtime], Limits(wall_time_ms=30_000)),
        cancel=cancel,
        on_output=on_output,
    )
    assert outcome.verdict is Verdict.KILLED, outcome
    assert seen == [b"first\n"]
    assert outcome.stdout == b"first\n"
    assert outcome.usage.wall_time_us < 20_000_000


def test_only_kept_bytes_are_streamed(pool: Pool) -> None:
    chunks: list[bytes] = []
    code = "import sys\nsys.stdout.write('x' * 100_000)\n"
    outcome = pool.execute(
        request(PY, code, Limits(max_output_bytes=1000)),
        on_output=lambda stream, chunk: chunks.append(chunk),
    )
    assert outcome.verdict is Verdict.OUTPUT_LIMIT
    assert b"".join(chunks) == outcome.stdout == b"x" * 1000


def test_on_output_raising_kills_the_worker_and_propagates(pool: Pool) -> None:
    class Boom(Exception):
        pass

    def on_output(stream: Stream, chunk: bytes) -> None:
        raise Boom

    with pytest.raises(Boom):
        pool.execute(
            request(PY, FIRST_THEN_SLEEP[PY], Limits(wall_time_ms=30_000)), on_output=on_output
        )
    assert pool.execute(request(PY, "print('still fine')")).stdout == b"still fine\n"


def test_on_start_raising_propagates_and_nothing_runs(pool: Pool) -> None:
    def on_start(started: Started) -> None:
        raise RuntimeError("no thanks")

    with pytest.raises(RuntimeError, match="no thanks"):
        pool.execute(request(PY, "print(1)"), on_start=on_start)
    assert pool.execute(request(PY, "print(2)")).stdout == b"2\n"


def sandboxed(marker: str) -> list[psutil.Process]:
    """Our descendants (zygote -> worker -> its children) with `marker` as an argument: other
    sessions on this machine may run the same test."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if marker in proc.cmdline():
                found.append(proc)
    return found


@BOTH
def test_cancel_while_running_kills_every_process(pool: Pool, runtime: Runtime) -> None:
    # A sleep child with this (unique) argument must be gone afterwards.
    marker = f"{os.getpid()}.{random.randrange(10**6):06d}"
    code = {
        PY: (
            "import subprocess, time\n"
            f"subprocess.Popen(['/usr/bin/sleep', '{marker}'])\n"
            "print('spawned', flush=True)\n"
            "time.sleep(60)\n"
        ),
        JS: (
            "const { spawn } = require('child_process');\n"
            f"const c = spawn('/usr/bin/sleep', ['{marker}'], {{ stdio: 'ignore' }});\n"
            "c.on('spawn', () => process.stdout.write('spawned\\n'));\n"
        ),
    }[runtime]
    cancel = threading.Event()
    alive_when_cancelled: list[int] = []

    def on_output(stream: Stream, chunk: bytes) -> None:
        # The parent's spawn returns once the exec began; its arguments show a moment later.
        deadline = time.monotonic() + 5
        while not (found := sandboxed(marker)) and time.monotonic() < deadline:
            time.sleep(0.01)
        alive_when_cancelled.extend(p.pid for p in found)
        cancel.set()

    outcome = pool.execute(
        request(runtime, code, Limits(wall_time_ms=30_000)), cancel=cancel, on_output=on_output
    )
    assert outcome.verdict is Verdict.KILLED, outcome
    assert outcome.signal == 9
    assert alive_when_cancelled, "the child was not running when the run was cancelled"
    deadline = time.monotonic() + 5
    while sandboxed(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sandboxed(marker)
    for pid in alive_when_cancelled:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_cancel_from_another_thread(pool: Pool) -> None:
    cancel = threading.Event()
    started = threading.Event()
    timer = threading.Thread(target=lambda: started.wait(10) and cancel.set())
    timer.start()
    outcome = pool.execute(
        request(PY, "import time\ntime.sleep(60)\n", Limits(wall_time_ms=30_000)),
        cancel=cancel,
        on_start=lambda s: started.set(),
    )
    timer.join()
    assert outcome.verdict is Verdict.KILLED


def test_cancel_already_set_raises_and_uses_no_worker(pool: Pool) -> None:
    cancel = threading.Event()
    cancel.set()
    starts: list[Started] = []
    with pytest.raises(Cancelled):
        pool.execute(request(PY, "print(1)"), cancel=cancel, on_start=starts.append)
    assert starts == []


def test_cancel_while_waiting_for_a_slot() -> None:
    config = PoolConfig(warm_workers_per_runtime=1, max_concurrent_executions=1, runtimes=(PY,))
    with Pool(config) as small:
        assert small.wait_until_ready(60), small.health()
        busy_cancel = threading.Event()
        busy_started = threading.Event()
        results = []

        def occupy() -> None:
            results.append(
                small.execute(
                    request(PY, "import time\ntime.sleep(60)\n", Limits(wall_time_ms=30_000)),
                    cancel=busy_cancel,
                    on_start=lambda s: busy_started.set(),
                )
            )

        busy = threading.Thread(target=occupy)
        busy.start()
        try:
            assert busy_started.wait(30)
            cancel = threading.Event()
            starts: list[Started] = []
            threading.Timer(0.1, cancel.set).start()
            with pytest.raises(Cancelled):
                small.execute(request(PY, "print(1)"), cancel=cancel, on_start=starts.append)
            assert cancel.is_set() and starts == []
        finally:
            busy_cancel.set()
            busy.join(30)
        assert results[0].verdict is Verdict.KILLED


def test_cancel_while_waiting_for_a_worker_to_boot() -> None:
    # `yes` never says ready: a request for this runtime waits for a worker (a cold start).
    config = PoolConfig(
        warm_workers_per_runtime=1, runtimes=(JS,), node_path="/usr/bin/yes", max_boot_failures=50
    )
    with Pool(config) as never_ready:
        cancel = threading.Event()
        threading.Timer(0.1, cancel.set).start()
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            never_ready.execute(request(JS, "console.log(1)"), cancel=cancel)
        assert time.monotonic() - t0 < 5  # well before boot_timeout_ms (10 s)
