"""The async backends' shared core (sandboxd/jobs/core.py): running one job and mapping what
it raises, long-poll waiters, and the dispatch loop's contract with a backend's storage
primitives. Pure logic: a `RunJob` the test controls, and for dispatch the smallest backend
that keeps its jobs in a list (the real ones are tested in test_jobs_embedded.py and
tests/cluster)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from sandboxd.jobs.contract import Job, JobSpec, JobState
from sandboxd.jobs.core import Held, JobsCore, Waiters, run_one
from sandboxd_pool import (
    Cancelled,
    ExecutionRequest,
    Outcome,
    PoolClosed,
    Runtime,
    RuntimeUnavailable,
    Started,
    Verdict,
)

WAIT_S = 10.0  # bounds for things that happen at once; never asserted on

SPEC = JobSpec(
    tenant="alpha",
    max_concurrent_executions=1,
    request=ExecutionRequest(runtime=Runtime.PYTHON, code="print(1)"),
)


def raising(error: BaseException) -> Callable[..., Outcome]:
    def run(*_args: object) -> Outcome:
        raise error

    return run


def run(runner: Callable[..., Outcome]) -> tuple[JobState, Outcome | None]:
    return run_one(runner, SPEC, "e" * 32, threading.Event(), lambda _s: None, 0)


# -- running one job -----------------------------------------------------------------------------


def test_an_outcome_is_done_with_it() -> None:
    outcome = Outcome(verdict=Verdict.KILLED, signal=9, execution_id="e" * 32)
    assert run(lambda *_a: outcome) == (JobState.DONE, outcome)


@pytest.mark.parametrize("error", [Cancelled("no worker"), PoolClosed("closing")])
def test_no_worker_taken_is_cancelled_with_nothing(error: Exception) -> None:
    assert run(raising(error)) == (JobState.CANCELLED, None)


def test_an_unavailable_runtime_is_an_internal_error_naming_it() -> None:
    state, outcome = run(raising(RuntimeUnavailable("python", "boot keeps failing")))
    assert state is JobState.DONE and outcome is not None
    assert outcome.verdict is Verdict.INTERNAL_ERROR
    assert outcome.stderr.startswith(b"sandboxd: ") and b"boot keeps failing" in outcome.stderr


def test_any_other_error_is_an_internal_error_with_a_logged_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="sandboxd.jobs"):
        state, outcome = run(raising(ValueError("a bug")))
    assert state is JobState.DONE and outcome is not None
    assert outcome.verdict is Verdict.INTERNAL_ERROR and b"a bug" not in outcome.stderr
    (record,) = caplog.records
    request_id = record.fields["request_id"]  # type: ignore[attr-defined]
    assert outcome.stderr == f"sandboxd: internal error (request id {request_id})\n".encode()
    assert record.exc_info is not None and "a bug" in str(record.exc_info[1])


# -- long-poll waiters ---------------------------------------------------------------------------


class Board:
    """The state a waiter reads, changed by the test."""

    def __init__(self) -> None:
        self.state = JobState.RUNNING
        self.reads = 0
        self.during_read: Callable[[], None] | None = None

    def read(self) -> Job:
        self.reads += 1
        state = self.state
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()  # the job finishes after this read took its state
        return Job("e" * 32, "alpha", state)


def waiting(
    waiters: Waiters, board: Board, wait_s: float, wake: threading.Event | None = None
) -> tuple[threading.Thread, list[Job]]:
    result: list[Job] = []
    thread = threading.Thread(
        target=lambda: result.append(waiters.wait("e" * 32, board.read, wait_s, wake))
    )
    thread.start()
    return thread, result


def until(predicate: Callable[[], bool]) -> None:
    event = threading.Event()
    for _ in range(int(WAIT_S / 0.005)):
        if predicate():
            return
        event.wait(0.005)
    raise AssertionError("never happened")


def test_a_finished_job_or_no_wait_answers_at_once() -> None:
    waiters, board = Waiters(4, None), Board()
    assert waiters.wait("e" * 32, board.read, 0, None).state is JobState.RUNNING
    board.state = JobState.DONE
    assert waiters.wait("e" * 32, board.read, WAIT_S, None).state is JobState.DONE
    assert board.reads == 2


def test_a_wake_up_answers_with_the_new_state() -> None:
    waiters, board = Waiters(4, None), Board()
    thread, result = waiting(waiters, board, WAIT_S)
    until(lambda: board.reads >= 2)  # registered and read again
    board.state = JobState.DONE
    waiters.wake("e" * 32)
    thread.join(WAIT_S)
    assert [j.state for j in result] == [JobState.DONE]


def test_a_job_that_finishes_during_a_read_is_answered_finished() -> None:
    """The wake-up comes while the waiter reads (it read RUNNING): its own event, cleared
    before the read, is set, so it reads again instead of answering RUNNING."""
    waiters, board = Waiters(4, None), Board()
    thread, result = waiting(waiters, board, WAIT_S)
    until(lambda: board.reads >= 2)

    def finish() -> None:
        board.state = JobState.DONE
        waiters.wake("e" * 32)

    board.during_read = finish
    waiters.wake("e" * 32)  # another wake-up makes it read once more, with the hook
    thread.join(WAIT_S)
    assert [j.state for j in result] == [JobState.DONE]


def test_polling_finds_a_change_without_a_wake_up() -> None:
    waiters, board = Waiters(4, poll_s=0.01), Board()
    thread, result = waiting(waiters, board, WAIT_S)
    until(lambda: board.reads >= 2)
    board.state = JobState.CANCELLED  # no wake-up: a lost "done" message
    thread.join(WAIT_S)
    assert [j.state for j in result] == [JobState.CANCELLED]


def test_the_end_of_the_call_ends_the_wait_with_the_current_state() -> None:
    waiters, board, ended = Waiters(4, None), Board(), threading.Event()
    thread, result = waiting(waiters, board, WAIT_S, ended)
    until(lambda: board.reads >= 2)
    ended.set()
    thread.join(WAIT_S)
    assert [j.state for j in result] == [JobState.RUNNING]


def test_past_max_waiters_a_long_poll_answers_at_once() -> None:
    waiters, board = Waiters(1, None), Board()
    thread, _ = waiting(waiters, board, WAIT_S)
    until(lambda: board.reads >= 2)
    assert waiters.wait("e" * 32, board.read, WAIT_S, None).state is JobState.RUNNING
    board.state = JobState.DONE
    waiters.wake_all()
    thread.join(WAIT_S)
    assert not thread.is_alive()


# -- dispatch ------------------------------------------------------------------------------------


class ListJobs(JobsCore[Held]):
    """Jobs in a list; a tenant has `slots` slots; every primitive call is recorded."""

    def __init__(self, runner: Callable[..., Outcome], *, max_running: int, slots: int) -> None:
        super().__init__(runner, max_running=max_running, max_waiters=4, poll_s=None)
        self.waiting: list[Held] = []
        self.slots = {"alpha": slots, "beta": slots}
        self.calls: list[tuple[str, str]] = []
        self.results: dict[str, tuple[JobState, Outcome | None]] = {}
        self.vanish: set[str] = set()  # cancelled between being picked and being taken

    def add(self, execution_id: str, tenant: str) -> None:
        with self._lock:
            self.waiting.append(Held(execution_id, JobSpec(tenant, 1, SPEC.request)))
        self._dispatch()

    def submit(self, spec: JobSpec) -> str:
        raise NotImplementedError

    def _cancel(self, tenant: str, execution_id: str) -> Job | None:
        raise NotImplementedError

    def queued(self) -> int:
        return len(self.waiting)

    def start_draining(self) -> None:
        with self._lock:
            self._draining = True

    def _read(self, tenant: str, execution_id: str) -> Job:
        state = self.results.get(execution_id, (JobState.QUEUED, None))[0]
        return Job(execution_id, tenant, state)

    def _next_waiting(self, blocked: set[str]) -> Held | None:
        return next((h for h in self.waiting if h.spec.tenant not in blocked), None)

    def _take_waiting(self, held: Held) -> bool:
        self.waiting.remove(held)
        return held.execution_id not in self.vanish

    def _try_slot(self, held: Held) -> bool:
        with self._lock:
            if self.slots[held.spec.tenant] == 0:
                return False
            self.slots[held.spec.tenant] -= 1
            self.calls.append(("slot", held.execution_id))
            return True

    def _release_slot(self, held: Held, took_s: float | None) -> None:
        with self._lock:
            self.slots[held.spec.tenant] += 1
            self.calls.append(("release" if took_s is not None else "unused", held.execution_id))

    def _on_started(self, held: Held) -> None:
        self.calls.append(("started", held.execution_id))

    def _finish(self, held: Held, state: JobState, outcome: Outcome | None) -> None:
        self.calls.append(("finish", held.execution_id))
        self.results[held.execution_id] = (state, outcome)
        self.waiters.wake(held.execution_id)

    def _after_run(self, held: Held) -> None:
        self.calls.append(("after", held.execution_id))
        self._dispatch()


class Gate:
    """A RunJob that takes a worker, then waits for its gate or its cancel event."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.running: set[str] = set()
        self.lock = threading.Lock()

    def __call__(
        self,
        spec: JobSpec,
        execution_id: str,
        cancel: threading.Event,
        on_start: Callable[[Started], None],
        queued_us: int,
    ) -> Outcome:
        on_start(Started(execution_id, 0, False))
        with self.lock:
            self.running.add(execution_id)
        try:
            while not self.open.is_set():
                if cancel.wait(0.005):
                    return Outcome(verdict=Verdict.KILLED, signal=9, execution_id=execution_id)
            return Outcome(verdict=Verdict.OK, exit_code=0, execution_id=execution_id)
        finally:
            with self.lock:
                self.running.discard(execution_id)


def test_dispatch_respects_the_node_bound_and_skips_a_blocked_tenant() -> None:
    gate = Gate()
    jobs = ListJobs(gate, max_running=2, slots=1)
    for execution_id, tenant in (("a1", "alpha"), ("a2", "alpha"), ("b1", "beta"), ("b2", "beta")):
        jobs.add(execution_id, tenant)
    until(lambda: gate.running == {"a1", "b1"})  # a2 waits for alpha's slot; b1 got past it
    gate.open.set()
    until(lambda: set(jobs.results) == {"a1", "a2", "b1", "b2"})
    assert all(r[0] is JobState.DONE for r in jobs.results.values())
    jobs.close(0)


def test_a_job_runs_with_its_slot_and_gives_it_back_before_its_result() -> None:
    gate = Gate()
    gate.open.set()
    jobs = ListJobs(gate, max_running=1, slots=1)
    jobs.add("a1", "alpha")
    until(lambda: ("after", "a1") in jobs.calls)
    assert jobs.calls == [
        ("slot", "a1"),
        ("started", "a1"),
        ("release", "a1"),
        ("finish", "a1"),
        ("after", "a1"),
    ]
    assert jobs.slots["alpha"] == 1
    jobs.close(0)


def test_a_job_gone_before_it_was_taken_gives_its_slot_back_unused() -> None:
    jobs = ListJobs(Gate(), max_running=1, slots=1)
    jobs.vanish.add("a1")
    jobs.add("a1", "alpha")
    assert jobs.calls == [("slot", "a1"), ("unused", "a1")]
    assert jobs.slots["alpha"] == 1 and "a1" not in jobs.results


def test_close_kills_what_outlives_the_grace_and_joins_it() -> None:
    gate = Gate()
    jobs = ListJobs(gate, max_running=2, slots=2)
    jobs.add("a1", "alpha")
    until(lambda: gate.running == {"a1"})
    jobs.close(0.05)
    state, outcome = jobs.results["a1"]
    assert state is JobState.DONE and outcome is not None and outcome.verdict is Verdict.KILLED
    assert not jobs._job_threads()


def test_get_waits_through_the_core_waiters() -> None:
    gate = Gate()
    jobs = ListJobs(gate, max_running=1, slots=1)
    jobs.add("a1", "alpha")
    until(lambda: gate.running == {"a1"})
    result: list[Job] = []
    thread = threading.Thread(target=lambda: result.append(jobs.get("alpha", "a1", WAIT_S)))
    thread.start()
    gate.open.set()
    thread.join(WAIT_S)
    assert [j.state for j in result] == [JobState.DONE]
    jobs.close(0)
