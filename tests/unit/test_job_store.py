"""The embedded async backend's bookkeeping: idempotency keys, tenants, retention with an
injected clock, the queue bound and the memory budget."""

from __future__ import annotations

import itertools

import pytest

from sandboxd.errors import NotFound, QuotaExceeded
from sandboxd.jobs.contract import JobSpec, JobState
from sandboxd.jobs.store import (
    RECORD_OVERHEAD_BYTES,
    JobStore,
    StoreLimits,
    request_bytes,
    reserved_bytes,
)
from sandboxd_pool import ExecutionRequest, Limits, Outcome, Runtime, Verdict

OUTPUT_BYTES = 1000


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def spec(tenant: str = "alpha", key: str = "", code: str = "print(1)") -> JobSpec:
    return JobSpec(
        tenant=tenant,
        max_concurrent_executions=1,
        request=ExecutionRequest(
            runtime=Runtime.PYTHON, code=code, limits=Limits(max_output_bytes=OUTPUT_BYTES)
        ),
        idempotency_key=key,
    )


def store(clock: Clock | None = None, **limits: float) -> JobStore:
    ids = (f"id{n}" for n in itertools.count())
    return JobStore(StoreLimits(**limits), clock or Clock(), new_id=lambda: next(ids))  # type: ignore[arg-type]


def done(stdout: bytes = b"") -> Outcome:
    return Outcome(verdict=Verdict.OK, exit_code=0, stdout=stdout)


def test_a_new_job_is_queued_and_found_by_its_tenant_only() -> None:
    s = store()
    record, created = s.add(spec("alpha"))
    assert created and record.state is JobState.QUEUED and s.queued == 1
    assert s.get("alpha", record.execution_id) is record
    with pytest.raises(NotFound):
        s.get("beta", record.execution_id)
    with pytest.raises(NotFound):
        s.get("alpha", "unknown")


def test_not_found_says_the_same_for_unknown_and_another_tenants() -> None:
    s = store()
    record, _ = s.add(spec("alpha"))
    with pytest.raises(NotFound) as other:
        s.get("beta", record.execution_id)
    with pytest.raises(NotFound) as unknown:
        s.get("beta", "id999")
    assert str(other.value).replace(record.execution_id, "X") == str(unknown.value).replace(
        "id999", "X"
    )


def test_same_key_same_tenant_returns_the_first_record() -> None:
    s = store()
    first, created = s.add(spec("alpha", key="k1"))
    again, created_again = s.add(spec("alpha", key="k1", code="print('other code')"))
    assert created and not created_again
    assert again is first
    assert len(s) == 1 and s.queued == 1


def test_keys_are_per_tenant_and_empty_key_never_dedupes() -> None:
    s = store()
    a, _ = s.add(spec("alpha", key="k"))
    b, created = s.add(spec("beta", key="k"))
    assert created and b.execution_id != a.execution_id
    x, _ = s.add(spec("alpha"))
    y, _ = s.add(spec("alpha"))
    assert x.execution_id != y.execution_id


def test_running_then_done_keeps_the_outcome_and_drops_the_request() -> None:
    s = store()
    record, _ = s.add(spec())
    s.mark_running(record)
    assert record.state is JobState.RUNNING and s.queued == 0
    s.finish(record, JobState.DONE, done(b"out"))
    assert record.state is JobState.DONE and record.outcome is not None
    assert record.outcome.stdout == b"out"
    assert record.spec is None
    s.finish(record, JobState.CANCELLED)  # a second finish changes nothing
    assert record.state is JobState.DONE


def test_cancelling_a_queued_job_frees_its_queue_place() -> None:
    s = store(max_queued_jobs=1)
    record, _ = s.add(spec())
    with pytest.raises(QuotaExceeded) as info:
        s.add(spec())
    assert info.value.subject == "node:async_queued_jobs"
    assert info.value.retry_after_s > 0
    s.finish(record, JobState.CANCELLED)
    assert s.queued == 0
    s.add(spec())


def test_running_jobs_do_not_count_against_the_queue() -> None:
    s = store(max_queued_jobs=1)
    record, _ = s.add(spec())
    s.mark_running(record)
    assert s.queued == 0
    second, created = s.add(spec())  # the queue's one place is free again
    assert (second.state, created, s.queued) == (JobState.QUEUED, True, 1)
    assert second.execution_id != record.execution_id
    with pytest.raises(QuotaExceeded) as info:  # and now it is taken
        s.add(spec())
    assert info.value.subject == "node:async_queued_jobs"


def test_a_finished_result_expires_after_the_retention_and_frees_its_key() -> None:
    clock = Clock()
    s = store(clock, retention_s=60)
    record, _ = s.add(spec(key="k"))
    clock.now_s += 1000  # queued and running jobs never expire
    assert s.get("alpha", record.execution_id) is record
    s.mark_running(record)
    s.finish(record, JobState.DONE, done())
    clock.now_s += 59.9
    assert s.get("alpha", record.execution_id) is record
    assert s.add(spec(key="k"))[0] is record
    clock.now_s += 0.1
    with pytest.raises(NotFound):
        s.get("alpha", record.execution_id)
    assert len(s) == 0 and s.used_bytes == 0
    fresh, created = s.add(spec(key="k"))
    assert created and fresh.execution_id != record.execution_id


def test_cancelled_jobs_expire_too() -> None:
    clock = Clock()
    s = store(clock, retention_s=5)
    record, _ = s.add(spec())
    s.finish(record, JobState.CANCELLED)
    clock.now_s += 5
    assert s.purge() == 1
    with pytest.raises(NotFound):
        s.get("alpha", record.execution_id)


def test_unfinished_jobs_reserve_room_for_their_largest_result() -> None:
    job = spec(code="x" * 500)
    assert request_bytes(job) == 500
    assert reserved_bytes(job) == RECORD_OVERHEAD_BYTES + 500 + 3 * OUTPUT_BYTES
    s = store()
    record, _ = s.add(job)
    assert s.used_bytes == reserved_bytes(job)
    s.mark_running(record)
    s.finish(record, JobState.DONE, done(b"12345"))
    assert s.used_bytes == RECORD_OVERHEAD_BYTES + 5


def test_the_memory_budget_refuses_with_a_retry_hint_from_the_next_expiry() -> None:
    clock = Clock()
    one = reserved_bytes(spec())
    s = store(clock, retention_s=30, max_bytes=2 * one + RECORD_OVERHEAD_BYTES)
    first, _ = s.add(spec())
    s.add(spec())
    with pytest.raises(QuotaExceeded) as info:
        s.add(spec())
    assert info.value.subject == "node:async_store_bytes"
    assert info.value.retry_after_s == 1.0  # nothing finished yet: the minimum hint
    s.finish(first, JobState.DONE, done())  # shrinks to its actual size: room again
    s.add(spec())
    with pytest.raises(QuotaExceeded) as info:
        s.add(spec())
    assert info.value.retry_after_s == 30.0  # when `first`'s result expires
    clock.now_s += 30
    assert s.purge() == 1
    assert s.used_bytes == 2 * one


def test_a_job_larger_than_the_whole_budget_is_refused() -> None:
    s = store(max_bytes=100)
    with pytest.raises(QuotaExceeded):
        s.add(spec())
    assert len(s) == 0 and s.used_bytes == 0


def test_output_files_are_reserved_and_then_counted_as_they_are() -> None:
    from sandboxd.jobs.store import OUTPUT_FILE_PATH_BYTES
    from sandboxd_pool.types import OutputFile

    limits = Limits(max_output_bytes=OUTPUT_BYTES, max_output_files=3, max_output_files_bytes=5000)
    job = JobSpec(
        tenant="alpha",
        max_concurrent_executions=1,
        request=ExecutionRequest(runtime=Runtime.PYTHON, code="", limits=limits),
    )
    assert reserved_bytes(job) == (
        RECORD_OVERHEAD_BYTES + 3 * OUTPUT_BYTES + 5000 + 3 * OUTPUT_FILE_PATH_BYTES
    )
    s = store()
    record, _ = s.add(job)
    s.mark_running(record)
    files = (OutputFile("a.png", b"x" * 4000), OutputFile("b/c.csv", b"y" * 10))
    s.finish(record, JobState.DONE, Outcome(verdict=Verdict.OK, stdout=b"12", files=files))
    assert s.used_bytes == RECORD_OVERHEAD_BYTES + 2 + len("a.png") + 4000 + len("b/c.csv") + 10
