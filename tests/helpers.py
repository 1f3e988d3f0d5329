"""Helpers shared by the test modules (import as `from helpers import run`)."""

from __future__ import annotations

from sandboxd_pool import ExecutionRequest, Limits, Outcome, Pool, Runtime


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
