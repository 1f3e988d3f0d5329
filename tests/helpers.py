"""Helpers shared by the test modules (import as `from helpers import run`)."""

from __future__ import annotations

from sandboxd_pool import ExecutionRequest, Limits, Outcome, Pool, Runtime

# The processes of a sandbox before the program starts any: its init (PID 1), the program (2)
# and, in Python, the exit helper the bootstrap clones (3: it shares the program's memory and
# nothing else, so the program's exit does not wait for that memory's teardown; python_boot.py).
SANDBOX_PIDS = {Runtime.PYTHON: [1, 2, 3], Runtime.JAVASCRIPT: [1, 2]}


def run(
    pool: Pool,
    runtime: Runtime,
    code: str,
    *,
    stdin: bytes = b"",
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
    limits: Limits | None = None,
) -> Outcome:
    return pool.execute(
        ExecutionRequest(
            runtime=runtime,
            code=code,
            stdin=stdin,
            args=args,
            env=env or {},
            files=files or {},
            limits=limits or Limits(),
        )
    )
