"""The embedded async store's per-tenant shares (SECURITY.md "Service attack review"): a tenant's unfinished jobs and
its bytes are bounded by its JobSpec, before the node's bounds, and freed as its jobs end."""

from __future__ import annotations

import itertools

import pytest

from sandboxd.errors import QuotaExceeded
from sandboxd.jobs.contract import JobSpec, JobState
from sandboxd.jobs.store import JobStore, StoreLimits, reserved_bytes
from sandboxd_pool import ExecutionRequest, Limits, Outcome, Runtime, Verdict

MIB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def spec(tenant: str, *, jobs: int = 100, max_bytes: int = 256 * MIB, output: int = 1) -> JobSpec:
    return JobSpec(
        tenant=tenant,
        max_concurrent_executions=1,
        request=ExecutionRequest(
            runtime=Runtime.PYTHON, code="pass", limits=Limits(max_output_bytes=output)
        ),
        max_queued_jobs=jobs,
        max_async_bytes=max_bytes,
    )


def store(clock: Clock, **limits: float) -> JobStore:
    ids = (f"id{n}" for n in itertools.count())
    return JobStore(StoreLimits(**limits), clock, new_id=lambda: next(ids))  # type: ignore[arg-type]


def subject(s: JobStore, job: JobSpec) -> str:
    with pytest.raises(QuotaExceeded) as info:
        s.add(job)
    return info.value.subject


def test_a_tenant_stops_at_its_own_queue_share_and_others_go_on() -> None:
    s = store(Clock(), max_queued_jobs=10)
    records = [s.add(spec("hog", jobs=3))[0] for _ in range(3)]
    assert subject(s, spec("hog", jobs=3)) == "tenant:hog:async_queued_jobs"
    assert s.add(spec("victim"))[1]
    # running jobs still count (unfinished); a finished one frees its place
    s.mark_running(records[0])
    assert subject(s, spec("hog", jobs=3)) == "tenant:hog:async_queued_jobs"
    s.finish(records[0], JobState.DONE, Outcome(verdict=Verdict.OK, exit_code=0))
    assert s.add(spec("hog", jobs=3))[1]
    assert s.tenant_unfinished("hog") == 3


def test_a_tenant_stops_at_its_own_bytes_share() -> None:
    clock = Clock()
    s = store(clock, retention_s=10, max_bytes=1024 * MIB)
    big = spec("hog", output=64 * MIB)
    first, _ = s.add(big)
    assert s.tenant_bytes("hog") == reserved_bytes(big)
    assert subject(s, big) == "tenant:hog:async_bytes"
    assert s.add(spec("victim", output=64 * MIB))[1]
    # a finished job counts its actual output until it expires
    s.finish(first, JobState.DONE, Outcome(verdict=Verdict.OK, exit_code=0, stdout=b"x" * MIB))
    assert MIB < s.tenant_bytes("hog") < 2 * MIB
    assert s.add(big)[1]
    clock.now_s += 11
    s.purge()
    assert s.tenant_bytes("hog") == reserved_bytes(big)


def test_the_tenant_share_is_checked_before_the_node_bounds() -> None:
    s = store(Clock(), max_queued_jobs=2)
    s.add(spec("hog", jobs=2))
    s.add(spec("hog", jobs=2))
    assert subject(s, spec("hog", jobs=2)) == "tenant:hog:async_queued_jobs"
    assert subject(s, spec("victim")) == "node:async_queued_jobs"
