"""What every async backend shares: running a job, starting waiting jobs, long-polls, drain.

A backend (embedded.py in memory, sandboxd.cluster.jobs in Redis) subclasses `JobsCore` and
implements only where its jobs live (the storage primitives below); the core does the rest,
the same way for both:

    running one job   `run_one`: the job through `RunJob`, its exceptions mapped to a state
                      (Cancelled or PoolClosed before a worker was taken: CANCELLED, nothing
                      ran; RuntimeUnavailable: DONE with an INTERNAL_ERROR outcome naming
                      it; anything else: DONE, INTERNAL_ERROR, logged under a request id)
    dispatch          `_dispatch`: while the node runs fewer than `max_running` jobs, the
                      backend's next waiting job whose tenant is not blocked gets one of its
                      tenant's slots (a tenant at its limit is skipped, not waited for) and a
                      thread; the slot is given back when the job ends
    long-polls        `Waiters`: at most `max_waiters` wait at once (each holds a gRPC
                      thread); a wait re-reads the job when woken (`wake_waiters`, when a job
                      finished), every `poll_s` if the backend may miss a wake-up, and ends
                      with the state read last when its call ends
    drain             `close(grace_s)`: after the backend's `start_draining`, running jobs get
                      the grace, then are killed, and every job thread is joined

Storage primitives (each backend's own):

    _read(tenant, id) -> Job               the job as GetExecution reports it (NotFound)
    _cancel(tenant, id) -> Job | None      cancel it (NotFound as _read): the job when that is
                                           the answer already, None to wait for its end
    _next_waiting(blocked) -> Held | None  under the lock: the job to start next, of a tenant
                                           not in `blocked`
    _take_waiting(held) -> bool            under the lock: take it out of the waiting jobs;
                                           False when it is gone (cancelled meanwhile)
    _try_slot(held) -> bool                one of its tenant's concurrency slots (kept by the backend)
    _release_slot(held, took_s)            give it back (took_s None: nothing ran)
    _on_started(held)                      a worker took it (RUNNING)
    _finish(held, state, outcome)          keep its result (or give it back: a drain)
    _after_run(held)                       its thread is about to end (dispatch again)"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sandboxd_pool import Cancelled, Outcome, PoolClosed, RuntimeUnavailable, Started, Verdict

from .contract import Job, JobSpec, JobState, RunJob

log = logging.getLogger("sandboxd.jobs")

JOIN_AFTER_KILL_S = 10.0  # a killed job's thread returns within milliseconds; this is a bound
WAKE_POLL_S = 0.25  # a long-poll looks this often whether its call has ended


def internal_error(execution_id: str, message: str) -> Outcome:
    return Outcome(
        verdict=Verdict.INTERNAL_ERROR, stderr=message.encode(), execution_id=execution_id
    )


def run_one(
    run_job: RunJob,
    spec: JobSpec,
    execution_id: str,
    cancel: threading.Event,
    on_start: Callable[[Started], None],
    queued_us: int,
) -> tuple[JobState, Outcome | None]:
    """Run the job; (DONE, its outcome) or (CANCELLED, None) if no worker was ever taken."""
    try:
        return JobState.DONE, run_job(spec, execution_id, cancel, on_start, queued_us)
    except (Cancelled, PoolClosed):
        return JobState.CANCELLED, None  # no worker was taken: nothing ran
    except RuntimeUnavailable as e:
        return JobState.DONE, internal_error(execution_id, f"sandboxd: {e}\n")
    except Exception:
        request_id = uuid.uuid4().hex
        log.exception(
            "internal error running an asynchronous execution",
            extra={
                "fields": {
                    "execution_id": execution_id,
                    "tenant": spec.tenant,
                    "request_id": request_id,
                }
            },
        )
        return JobState.DONE, internal_error(
            execution_id, f"sandboxd: internal error (request id {request_id})\n"
        )


class Waiters:
    """Long-polls: who waits for which job, at most `max_waiters` at once."""

    def __init__(self, max_waiters: int, poll_s: float | None) -> None:
        """poll_s: re-read a waited-for job this often even without a wake-up (None: only
        when woken; for a backend that never misses one)."""
        self._max = max_waiters
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._count = 0
        self._events: dict[str, set[threading.Event]] = {}

    def wait(
        self,
        execution_id: str,
        read: Callable[[], Job],
        wait_s: float,
        wake: threading.Event | None,
    ) -> Job:
        """The job, once finished or when `wait_s` is over or `wake` (the call ended) is set,
        whichever comes first; at once with the current state when too many wait already.
        The wake-up event is this wait's own and is cleared before each read, so a job that
        finishes while it is read is never answered with the state read before."""
        job = read()
        if job.state.finished or wait_s <= 0:
            return job
        event = threading.Event()
        with self._lock:
            if self._count >= self._max:
                return job
            self._count += 1
            self._events.setdefault(execution_id, set()).add(event)
        deadline = time.monotonic() + wait_s
        step = min(s for s in (self._poll_s, WAKE_POLL_S if wake else None, wait_s) if s)
        try:
            while True:
                event.clear()
                job = read()
                left = deadline - time.monotonic()
                if job.state.finished or left <= 0 or (wake is not None and wake.is_set()):
                    return job
                event.wait(min(step, left))
        finally:
            with self._lock:
                self._count -= 1
                events = self._events.get(execution_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._events[execution_id]

    def wake(self, execution_id: str) -> None:
        """The job changed (it finished): its waiters read it again."""
        with self._lock:
            events = list(self._events.get(execution_id, ()))
        for event in events:
            event.set()

    def wake_all(self) -> None:
        with self._lock:
            events = [e for events in self._events.values() for e in events]
        for event in events:
            event.set()


@dataclass(eq=False)
class Held:
    """A job this node took and has not finished: waiting for a slot, then running."""

    execution_id: str
    spec: JobSpec
    queued_us: int = 0  # time spent queued before it started, added to its queue_wait_us
    cancel: threading.Event = field(default_factory=threading.Event)
    started: bool = False  # a worker took it
    thread: threading.Thread | None = None


H = TypeVar("H", bound=Held)


class JobsCore(ABC, Generic[H]):
    """The shared part of a jobs.JobBackend (see the module doc). Subclasses implement the
    storage primitives, `submit`, `queued` and `start_draining`."""

    GRACE_OVER = "drain grace over: killing running asynchronous executions"

    def __init__(self, run: RunJob, *, max_running: int, max_waiters: int, poll_s: float | None):
        self._run_job = run
        self._max_running = max_running
        self._lock = threading.Lock()
        self._live: dict[str, H] = {}  # dispatched, not finished
        self._draining = False
        self.waiters = Waiters(max_waiters, poll_s)

    # -- JobBackend ------------------------------------------------------------------------------

    def get(
        self,
        tenant: str,
        execution_id: str,
        wait_s: float = 0.0,
        wake: threading.Event | None = None,
    ) -> Job:
        return self.waiters.wait(
            execution_id, lambda: self._read(tenant, execution_id), wait_s, wake
        )

    def cancel(
        self,
        tenant: str,
        execution_id: str,
        wait_s: float = 0.0,
        wake: threading.Event | None = None,
    ) -> Job:
        """The backend's `_cancel`, then (unless it answered at once) a wait as `get` for the
        job to end."""
        answered = self._cancel(tenant, execution_id)
        if answered is not None:
            return answered
        return self.get(tenant, execution_id, wait_s, wake)

    def close(self, grace_s: float) -> None:
        """Drain (the backend's start_draining), give running jobs `grace_s`, kill the rest
        and join every job thread."""
        self.start_draining()
        deadline = time.monotonic() + grace_s
        for thread in self._job_threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._live.values())
        if left:
            log.warning(
                self.GRACE_OVER, extra={"fields": {"execution_ids": [h.execution_id for h in left]}}
            )
        for held in left:
            held.cancel.set()
        for thread in self._job_threads():
            thread.join(JOIN_AFTER_KILL_S)
            if thread.is_alive():
                log.error("an asynchronous execution's thread did not end after its kill")

    @abstractmethod
    def start_draining(self) -> None: ...

    # -- dispatch and running --------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start waiting jobs while the node has room and their tenant a slot."""
        blocked: set[str] = set()
        while True:
            with self._lock:
                if self._draining or len(self._live) >= self._max_running:
                    return
                held = self._next_waiting(blocked)
            if held is None:
                return
            if not self._try_slot(held):
                blocked.add(held.spec.tenant)
                continue
            with self._lock:
                taken = self._take_waiting(held)
                if taken:
                    held.thread = threading.Thread(
                        target=self._run,
                        args=(held,),
                        name=f"sandboxd-job-{held.execution_id[:8]}",
                        daemon=True,  # close() joins them; a crash must not hang the exit
                    )
                    self._live[held.execution_id] = held
                    held.thread.start()
            if not taken:  # cancelled meanwhile: nothing ran
                self._release_slot(held, None)

    def _run(self, held: H) -> None:
        dispatched = time.monotonic()

        def on_start(_started: Started) -> None:
            held.started = True
            self._on_started(held)

        state, outcome = run_one(
            self._run_job, held.spec, held.execution_id, held.cancel, on_start, held.queued_us
        )
        try:
            self._release_slot(held, time.monotonic() - dispatched)
            self._finish(held, state, outcome)
        finally:
            with self._lock:
                self._live.pop(held.execution_id, None)
            self._after_run(held)

    def _job_threads(self) -> list[threading.Thread]:
        with self._lock:
            return [h.thread for h in self._live.values() if h.thread is not None]

    # -- logs both backends write ----------------------------------------------------------------

    @staticmethod
    def _log_submitted(spec: JobSpec, execution_id: str, deduplicated: bool) -> None:
        log.info(
            "execution submitted",
            extra={
                "fields": {
                    "execution_id": execution_id,
                    "tenant": spec.tenant,
                    "runtime": spec.request.runtime.value,
                    "mode": spec.request.mode.value,
                    "deduplicated": deduplicated,
                    "labels": dict(spec.labels),
                }
            },
        )

    @staticmethod
    def _log_cancel_requested(tenant: str, execution_id: str, state: str) -> None:
        log.info(
            "execution cancel requested",
            extra={"fields": {"execution_id": execution_id, "tenant": tenant, "state": state}},
        )

    def _log_cancelled(self, execution_id: str, tenant: str | None = None) -> None:
        fields: dict[str, object] = {"execution_id": execution_id, "draining": self._draining}
        if tenant is not None:
            fields["tenant"] = tenant
        log.info("execution cancelled", extra={"fields": fields})

    # -- storage primitives ----------------------------------------------------------------------

    @abstractmethod
    def _read(self, tenant: str, execution_id: str) -> Job: ...

    @abstractmethod
    def _cancel(self, tenant: str, execution_id: str) -> Job | None: ...

    @abstractmethod
    def _next_waiting(self, blocked: set[str]) -> H | None: ...

    @abstractmethod
    def _take_waiting(self, held: H) -> bool: ...

    @abstractmethod
    def _try_slot(self, held: H) -> bool: ...

    @abstractmethod
    def _release_slot(self, held: H, took_s: float | None) -> None: ...

    @abstractmethod
    def _on_started(self, held: H) -> None: ...

    @abstractmethod
    def _finish(self, held: H, state: JobState, outcome: Outcome | None) -> None: ...

    @abstractmethod
    def _after_run(self, held: H) -> None: ...
