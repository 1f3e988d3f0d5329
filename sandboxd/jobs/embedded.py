"""The embedded (no Redis) async backend: an in-process queue on this node, results in memory.

Scheduling. Accepted jobs wait in one FIFO queue per tenant. A job starts when its tenant has
a free concurrency slot (the same `ConcurrencyQuota` slots as synchronous calls, so a
tenant's sync and async executions together stay within `max_concurrent_executions`) and
fewer than `max_running` jobs run on the node. When a node slot is free it goes to the tenant
with the fewest jobs running on the node (the oldest waiting job first among equals), so a
tenant's backlog never delays another tenant's jobs beyond its own share, and a tenant at its
limit does not hold up the others. Unlike a synchronous call, a job over its tenant's limit
waits instead of getting RESOURCE_EXHAUSTED; only a full queue or memory budget, the
tenant's or the node's, refuses a Submit (store.py). A started job runs in its own thread
through `RunJob`; it is QUEUED until a worker takes it (it may still wait in the engine for a
node slot or a warm worker), then RUNNING, then DONE. Its queue time counts into its
`queue_wait_us`.

Running a job, dispatch, long-polls and the end of a drain are core.py's (shared with the
Redis backend); this module keeps the jobs: the store, the queues, the node's slots.
`start_draining` refuses new jobs and cancels every job not started yet (CANCELLED, nothing
ran); `close(grace_s)` gives running jobs the grace to finish, then kills them (DONE, verdict
KILLED). Results are lost at exit."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from sandboxd_pool import Outcome

from ..errors import Unavailable
from ..quotas.concurrency import ConcurrencyQuota
from .contract import Job, JobSpec, JobState, RunJob
from .core import Held, JobsCore
from .store import JobRecord, JobStore, StoreLimits


@dataclass(eq=False)
class _Held(Held):
    record: JobRecord | None = None

    @property
    def rec(self) -> JobRecord:
        assert self.record is not None
        return self.record


class EmbeddedJobs(JobsCore[_Held]):
    """Implements jobs.JobBackend for one node."""

    def __init__(
        self,
        run: RunJob,
        quota: ConcurrencyQuota,
        limits: StoreLimits,
        *,
        max_running: int,
        max_waiters: int,
    ) -> None:
        super().__init__(run, max_running=max_running, max_waiters=max_waiters, poll_s=None)
        self._quota = quota
        self._store = JobStore(limits)
        # not dispatched: tenant -> its jobs, FIFO (a tenant is here while it has one)
        self._waiting: dict[str, OrderedDict[str, _Held]] = {}
        quota.on_release(lambda _tenant: self._dispatch())

    # -- JobBackend ------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> str:
        with self._lock:
            if self._draining:
                raise Unavailable("the node is draining (shutting down); submit to another node")
            record, created = self._store.add(spec)
            if created:
                held = _Held(record.execution_id, spec, record=record)
                self._waiting.setdefault(spec.tenant, OrderedDict())[record.execution_id] = held
        self._log_submitted(spec, record.execution_id, deduplicated=not created)
        if created:
            self._dispatch()
        return record.execution_id

    def queued(self) -> int:
        with self._lock:
            return self._store.queued

    def start_draining(self) -> None:
        with self._lock:
            self._draining = True
            for jobs in self._waiting.values():
                for held in jobs.values():
                    self._finish_locked(held.rec, JobState.CANCELLED, None)
            self._waiting.clear()
            for live in self._live.values():
                if live.rec.state is JobState.QUEUED:
                    live.cancel.set()  # waiting in the engine for a worker: Cancelled, nothing ran

    # -- storage primitives (core.py) ------------------------------------------------------------

    def _read(self, tenant: str, execution_id: str) -> Job:
        with self._lock:
            return _snapshot(self._store.get(tenant, execution_id))

    def _cancel(self, tenant: str, execution_id: str) -> Job | None:
        """A waiting job is CANCELLED here; a running one's worker is killed (then waited for)."""
        with self._lock:
            record = self._store.get(tenant, execution_id)
            if record.state.finished:
                return _snapshot(record)
            self._log_cancel_requested(tenant, execution_id, record.state.value)
            if self._unqueue_locked(tenant, execution_id) is not None:
                self._finish_locked(record, JobState.CANCELLED, None)
                return _snapshot(record)
            self._live[execution_id].cancel.set()
        return None

    def _next_waiting(self, blocked: set[str]) -> _Held | None:
        """The oldest waiting job of the tenant with the fewest jobs running here."""
        candidates = [t for t in self._waiting if t not in blocked]
        if not candidates:
            return None
        running = Counter(live.spec.tenant for live in self._live.values())
        tenant = min(
            candidates,
            key=lambda t: (running[t], next(iter(self._waiting[t].values())).rec.submitted_at_s),
        )
        return next(iter(self._waiting[tenant].values()))

    def _take_waiting(self, held: _Held) -> bool:
        if self._unqueue_locked(held.spec.tenant, held.execution_id) is None:
            return False
        submitted = held.rec.submitted_at_s
        held.queued_us = int(max(0.0, self._store.now() - submitted) * 1e6)
        return True

    def _try_slot(self, held: _Held) -> bool:
        return self._quota.try_acquire(held.spec.tenant, held.spec.max_concurrent_executions)

    def _release_slot(self, held: _Held, took_s: float | None) -> None:
        self._quota.release(held.spec.tenant, took_s)  # its listener dispatches

    def _on_started(self, held: _Held) -> None:
        with self._lock:
            self._store.mark_running(held.rec)

    def _finish(self, held: _Held, state: JobState, outcome: Outcome | None) -> None:
        with self._lock:
            self._finish_locked(held.rec, state, outcome)

    def _after_run(self, held: _Held) -> None:
        self._dispatch()

    # -- helpers ---------------------------------------------------------------------------------

    def _unqueue_locked(self, tenant: str, execution_id: str) -> _Held | None:
        """Take a job out of its tenant's queue; None if it was not waiting there."""
        jobs = self._waiting.get(tenant)
        held = None if jobs is None else jobs.pop(execution_id, None)
        if jobs is not None and not jobs:
            del self._waiting[tenant]
        return held

    def _finish_locked(self, record: JobRecord, state: JobState, outcome: Outcome | None) -> None:
        self._store.finish(record, state, outcome)
        self.waiters.wake(record.execution_id)
        if state is JobState.CANCELLED:
            self._log_cancelled(record.execution_id, record.tenant)


def _snapshot(record: JobRecord) -> Job:
    return Job(record.execution_id, record.tenant, record.state, record.outcome)
