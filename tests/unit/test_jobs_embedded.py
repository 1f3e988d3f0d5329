"""The embedded async backend's scheduling, long-poll, cancel, idempotency and drain, with a
fake engine (`RunJob`) the test controls: no daemon, no workers.

The fake's behaviour comes from the job's code:
    "ok"         takes a worker and returns OK at once
    "block"      takes a worker, then waits for `gate` (OK) or its cancel event (KILLED)
    "no-worker"  never gets a worker: waits for its cancel event, then raises Cancelled
    "broken"     raises RuntimeUnavailable before taking a worker
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sandboxd.errors import NotFound, QuotaExceeded, Unavailable
from sandboxd.jobs.contract import JobSpec, JobState
from sandboxd.jobs.embedded import EmbeddedJobs
from sandboxd.jobs.store import StoreLimits
from sandboxd.quotas.concurrency import ConcurrencyQuota
from sandboxd_pool import (
    Cancelled,
    ExecutionRequest,
    Outcome,
    Runtime,
    RuntimeUnavailable,
    Started,
    Verdict,
)

WAIT_S = 10.0  # bounds for things that happen within milliseconds; never asserted on


class FakeEngine:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[str] = []
        self.queued_us: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(
        self,
        spec: JobSpec,
        execution_id: str,
        cancel: threading.Event,
        on_start: Callable[[Started], None],
        queued_us: int,
    ) -> Outcome:
        with self.lock:
            self.calls.append(execution_id)
            self.queued_us[execution_id] = queued_us
        code = spec.request.code
        if code == "broken":
            raise RuntimeUnavailable("python", "boot keeps failing")
        if code == "no-worker":
            assert cancel.wait(WAIT_S)
            raise Cancelled("cancelled while waiting for a worker")
        on_start(Started(execution_id, 0, False))
        if code == "block":
            while not self.gate.is_set():
                if cancel.wait(0.005):
                    return Outcome(verdict=Verdict.KILLED, signal=9, execution_id=execution_id)
        return Outcome(verdict=Verdict.OK, exit_code=0, stdout=b"ran", execution_id=execution_id)

    def ran(self, execution_id: str) -> bool:
        with self.lock:
            return execution_id in self.calls


def spec(code: str, tenant: str = "alpha", limit: int = 1, key: str = "") -> JobSpec:
    return JobSpec(
        tenant=tenant,
        max_concurrent_executions=limit,
        request=ExecutionRequest(runtime=Runtime.PYTHON, code=code),
        idempotency_key=key,
    )


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


@pytest.fixture()
def engine() -> Iterator[FakeEngine]:
    e = FakeEngine()
    yield e
    e.gate.set()


@pytest.fixture()
def quota() -> ConcurrencyQuota:
    return ConcurrencyQuota()


def backend(
    engine: FakeEngine, quota: ConcurrencyQuota, *, max_running: int = 8, max_waiters: int = 8
) -> EmbeddedJobs:
    return EmbeddedJobs(
        engine, quota, StoreLimits(), max_running=max_running, max_waiters=max_waiters
    )


def state(jobs: EmbeddedJobs, execution_id: str, tenant: str = "alpha") -> JobState:
    return jobs.get(tenant, execution_id).state


def test_submit_runs_and_get_waits_for_the_result(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    execution_id = jobs.submit(spec("ok"))
    job = jobs.get("alpha", execution_id, wait_s=WAIT_S)
    assert job.state is JobState.DONE
    assert job.outcome is not None and job.outcome.stdout == b"ran"
    assert engine.calls == [execution_id]
    assert engine.queued_us[execution_id] >= 0
    assert quota.running("alpha") == 0


def test_jobs_over_the_tenant_limit_wait_instead_of_failing(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    first = jobs.submit(spec("block", limit=1))
    second = jobs.submit(spec("ok", limit=1))
    wait_until(lambda: state(jobs, first) is JobState.RUNNING)
    assert state(jobs, second) is JobState.QUEUED
    assert jobs.queued() == 1
    assert not engine.ran(second)
    engine.gate.set()
    assert jobs.get("alpha", second, wait_s=WAIT_S).state is JobState.DONE
    assert jobs.get("alpha", first, wait_s=WAIT_S).state is JobState.DONE
    assert jobs.queued() == 0


def test_a_tenant_at_its_limit_does_not_hold_up_others(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    jobs.submit(spec("block", "alpha"))
    waiting = jobs.submit(spec("ok", "alpha"))
    other = jobs.submit(spec("ok", "beta"))
    assert jobs.get("beta", other, wait_s=WAIT_S).state is JobState.DONE
    assert state(jobs, waiting) is JobState.QUEUED


def test_the_node_bound_on_running_jobs(engine: FakeEngine, quota: ConcurrencyQuota) -> None:
    jobs = backend(engine, quota, max_running=1)
    first = jobs.submit(spec("block", "alpha"))
    other = jobs.submit(spec("ok", "beta"))
    wait_until(lambda: state(jobs, first) is JobState.RUNNING)
    assert state(jobs, other, "beta") is JobState.QUEUED
    engine.gate.set()
    assert jobs.get("beta", other, wait_s=WAIT_S).state is JobState.DONE


def test_a_slot_freed_by_a_sync_call_starts_a_waiting_job(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    with quota.slot("alpha", 1):  # a synchronous Execute holds the tenant's only slot
        execution_id = jobs.submit(spec("ok", limit=1))
        assert jobs.get("alpha", execution_id, wait_s=0.05).state is JobState.QUEUED
    assert jobs.get("alpha", execution_id, wait_s=WAIT_S).state is JobState.DONE


def test_cancel_a_queued_job_it_never_runs(engine: FakeEngine, quota: ConcurrencyQuota) -> None:
    jobs = backend(engine, quota)
    first = jobs.submit(spec("block"))
    queued = jobs.submit(spec("ok"))
    job = jobs.cancel("alpha", queued)
    assert job.state is JobState.CANCELLED and job.outcome is None
    engine.gate.set()
    assert jobs.get("alpha", first, wait_s=WAIT_S).state is JobState.DONE
    assert not engine.ran(queued)
    assert jobs.cancel("alpha", queued).state is JobState.CANCELLED  # idempotent


def test_cancel_a_running_job_kills_it(engine: FakeEngine, quota: ConcurrencyQuota) -> None:
    jobs = backend(engine, quota)
    execution_id = jobs.submit(spec("block"))
    wait_until(lambda: state(jobs, execution_id) is JobState.RUNNING)
    job = jobs.cancel("alpha", execution_id, wait_s=WAIT_S)
    assert job.state is JobState.DONE
    assert job.outcome is not None and job.outcome.verdict is Verdict.KILLED
    again = jobs.cancel("alpha", execution_id)
    assert again.state is JobState.DONE and again.outcome == job.outcome


def test_cancel_while_waiting_for_a_worker_is_cancelled(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    execution_id = jobs.submit(spec("no-worker"))
    wait_until(lambda: engine.ran(execution_id))
    assert state(jobs, execution_id) is JobState.QUEUED  # handed to the engine, no worker yet
    assert jobs.cancel("alpha", execution_id, wait_s=WAIT_S).state is JobState.CANCELLED
    wait_until(lambda: quota.running("alpha") == 0)


def test_an_engine_error_is_an_internal_error_verdict(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    job = jobs.get("alpha", jobs.submit(spec("broken")), wait_s=WAIT_S)
    assert job.state is JobState.DONE and job.outcome is not None
    assert job.outcome.verdict is Verdict.INTERNAL_ERROR
    assert b"boot keeps failing" in job.outcome.stderr
    wait_until(lambda: quota.running("alpha") == 0)


def test_another_tenants_id_is_not_found(engine: FakeEngine, quota: ConcurrencyQuota) -> None:
    jobs = backend(engine, quota)
    execution_id = jobs.submit(spec("ok", "alpha"))
    with pytest.raises(NotFound):
        jobs.get("beta", execution_id)
    with pytest.raises(NotFound):
        jobs.cancel("beta", execution_id)
    assert jobs.get("alpha", execution_id, wait_s=WAIT_S).state is JobState.DONE


def test_long_poll_returns_the_current_state_when_the_wait_ends(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    execution_id = jobs.submit(spec("block"))
    wait_until(lambda: state(jobs, execution_id) is JobState.RUNNING)
    began = time.monotonic()
    assert jobs.get("alpha", execution_id, wait_s=0.2).state is JobState.RUNNING
    assert time.monotonic() - began >= 0.2
    wake = threading.Event()
    wake.set()  # the call already ended: no wait at all
    assert jobs.get("alpha", execution_id, wait_s=WAIT_S, wake=wake).state is JobState.RUNNING


def test_too_many_long_polls_answer_at_once(engine: FakeEngine, quota: ConcurrencyQuota) -> None:
    jobs = backend(engine, quota, max_waiters=0)
    execution_id = jobs.submit(spec("block"))
    wait_until(lambda: state(jobs, execution_id) is JobState.RUNNING)
    began = time.monotonic()
    assert jobs.get("alpha", execution_id, wait_s=WAIT_S).state is JobState.RUNNING
    assert time.monotonic() - began < WAIT_S


def test_concurrent_duplicate_submits_run_once(engine: FakeEngine, quota: ConcurrencyQuota) -> None:
    jobs = backend(engine, quota)
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def submit() -> None:
        barrier.wait()
        ids.append(jobs.submit(spec("ok", key="same", limit=8)))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert jobs.get("alpha", ids[0], wait_s=WAIT_S).state is JobState.DONE
    assert engine.calls == [ids[0]]


def test_drain_cancels_queued_jobs_refuses_new_ones_and_lets_running_ones_finish(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    running = jobs.submit(spec("block"))
    queued = jobs.submit(spec("ok"))
    wait_until(lambda: state(jobs, running) is JobState.RUNNING)
    jobs.start_draining()
    assert state(jobs, queued) is JobState.CANCELLED
    with pytest.raises(Unavailable):
        jobs.submit(spec("ok", "beta"))
    threading.Timer(0.05, engine.gate.set).start()
    jobs.close(grace_s=WAIT_S)
    job = jobs.get("alpha", running)
    assert job.state is JobState.DONE
    assert job.outcome is not None and job.outcome.verdict is Verdict.OK
    assert not engine.ran(queued)


def test_drain_kills_running_jobs_when_the_grace_is_over(
    engine: FakeEngine, quota: ConcurrencyQuota
) -> None:
    jobs = backend(engine, quota)
    running = jobs.submit(spec("block"))
    waiting_for_worker = jobs.submit(spec("no-worker", "beta"))
    wait_until(lambda: state(jobs, running) is JobState.RUNNING)
    wait_until(lambda: engine.ran(waiting_for_worker))
    jobs.close(grace_s=0.05)
    job = jobs.get("alpha", running)
    assert job.state is JobState.DONE
    assert job.outcome is not None and job.outcome.verdict is Verdict.KILLED
    assert state(jobs, waiting_for_worker, "beta") is JobState.CANCELLED
    assert quota.running("alpha") == quota.running("beta") == 0


def test_queue_full_is_quota_exceeded(engine: FakeEngine, quota: ConcurrencyQuota) -> None:
    jobs = EmbeddedJobs(engine, quota, StoreLimits(max_queued_jobs=1), max_running=8, max_waiters=8)
    jobs.submit(spec("block"))
    wait_until(lambda: jobs.queued() == 0)  # running: not queued
    jobs.submit(spec("ok"))
    with pytest.raises(QuotaExceeded):
        jobs.submit(spec("ok"))
