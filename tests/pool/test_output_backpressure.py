"""Pool.execute(output_paused=...): a consumer that is behind stops the reading of the program's
output instead of buffering it, and the limits hold all the while."""

from __future__ import annotations

import threading
import time

from sandboxd_pool import ExecutionRequest, Limits, Pool, Runtime, Stream, Verdict

WRITES_4_MIB = "import sys\nsys.stdout.write('x' * (4 << 20))\nsys.stdout.flush()\n"


def test_paused_output_is_not_read_and_the_wall_limit_still_holds(pool: Pool) -> None:
    seen: list[bytes] = []
    outcome = pool.execute(
        ExecutionRequest(
            runtime=Runtime.PYTHON,
            code=WRITES_4_MIB,
            limits=Limits(wall_time_ms=1_500, max_output_bytes=8 << 20),
        ),
        on_output=lambda stream, chunk: seen.append(chunk),
        output_paused=lambda: True,
    )
    # Nothing was read while it ran, so the program blocked on its full pipe until the
    # deadline; after the kill only what the pipe held (at most 1 MiB, pipe-max-size) is read.
    assert outcome.verdict is Verdict.TIMEOUT, outcome
    assert b"".join(seen) == outcome.stdout
    assert len(outcome.stdout) <= 1 << 20  # (0 when a busy machine started it late)


def test_paused_output_does_not_stop_the_cpu_limit(pool: Pool) -> None:
    code = (
        "import sys, threading\n"
        "def burn():\n    while True: pass\n"
        "threading.Thread(target=burn, daemon=True).start()\n"
        "sys.stdout.write('x' * (4 << 20)); sys.stdout.flush()\n"
    )
    outcome = pool.execute(
        ExecutionRequest(
            runtime=Runtime.PYTHON,
            code=code,
            limits=Limits(wall_time_ms=20_000, cpu_time_ms=500, max_output_bytes=8 << 20),
        ),
        output_paused=lambda: True,
    )
    assert outcome.verdict is Verdict.CPU_TIME_LIMIT, outcome


def test_output_resumes_whole_and_in_order_once_the_consumer_catches_up(pool: Pool) -> None:
    release = threading.Event()
    threading.Timer(0.5, release.set).start()
    chunks: list[bytes] = []
    started = time.monotonic()
    outcome = pool.execute(
        ExecutionRequest(
            runtime=Runtime.PYTHON,
            code=WRITES_4_MIB,
            limits=Limits(wall_time_ms=20_000, max_output_bytes=8 << 20),
        ),
        on_output=lambda stream, chunk: chunks.append(chunk) if stream is Stream.STDOUT else None,
        output_paused=lambda: not release.is_set(),
    )
    assert outcome.verdict is Verdict.OK, outcome
    assert b"".join(chunks) == outcome.stdout == b"x" * (4 << 20)
    # It could not finish before the consumer let it: the pipe holds far less than 4 MiB.
    assert outcome.usage.wall_time_us >= 400_000
    assert time.monotonic() - started >= 0.5
