"""The embedded (no Redis) async backend: an in-process queue on this node, results in memory.

Scheduling. Accepted jobs wait in one FIFO queue per tenant. A job starts when its tenant has
a free concurrency slot (the same `ConcurrencyQuota` slots as synchronous calls, so a
tenant's sync and async executions together stay within `max_concurrent_executions`) and
fewer than `max_running` jobs run on the node. When a node slot is free it goes to the tenant
with the fewest jobs running on the node (the oldest waiting job first among equals), so a
tenant's backlog never delays another tenant's jobs beyond its own share, and a tenant at its
limit does not hold up the others. Unlike a synchronous call, a job over its tenant's limit
waits instead of getting RESOURCE_EXHAUSTED; only a full queue or memory budget, the
tenant's or the node's, refuses a Submit (store.py). A started job runs in its own thread through `RunJob`; it is QUEUED until a
worker takes it (it may still wait in the engine for a node slot or a warm worker), then
RUNNING, then DONE. Its queue time counts into its `queue_wait_us`.

Long-polls wait on an event set when the job finishes or the call ends; at most
`max_waiters` wait at once (each holds one gRPC thread), further ones get the current state
at once. Drain: `start_draining` refuses new jobs and cancels every job not started yet
(CANCELLED, nothing ran); `close(grace_s)` gives running jobs the grace to finish, then
kills them (DONE, verdict KILLED) and joins every thread. Results are lost at exit."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from sandboxd_pool import Cancelled, Outcome, PoolClosed, RuntimeUnavailable, Started, Verdict

from ..errors import Unavailable
from ..quotas.concurrency import ConcurrencyQuota
from .contract import Job, JobSpec, JobState, RunJob
from .store import JobRecord, JobStore, StoreLimits

log = logging.getLogger("sandboxd.jobs")

JOIN_AFTER_KILL_S = 10.0  # a killed job's thread returns within milliseconds; this is a bound


@dataclass
class _Live:
    """A dispatched, unfinished job: its thread and the engine's cancel event."""

    record: JobRecord
    spec: JobSpec
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class EmbeddedJobs:
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
        self._run_job = run
        self._quota = quota
        self._max_running = max_running
        self._max_waiters = max_waiters
        self._lock = threading.Lock()
        self._store = JobStore(limits)
        # not dispatched: tenant -> its jobs, FIFO (a tenant is here while it has one)
        self._waiting: dict[str, OrderedDict[str, JobRecord]] = {}
        self._live: dict[str, _Live] = {}  # dispatched, not finished
        self._watchers: dict[str, set[threading.Event]] = {}  # unfinished id -> waiters
        self._waiters = 0
        self._draining = False
        quota.on_release(self._on_slot_freed)

    # -- JobBackend ------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> str:
        with self._lock:
            if self._draining:
                raise Unavailable("the node is draining (shutting down); submit to another node")
            record, created = self._store.add(spec)
            if created:
                self._waiting.setdefault(spec.tenant, OrderedDict())[record.execution_id] = record
                self._watchers[record.execution_id] = set()
                self._dispatch_locked()
        log.info(
            "execution submitted",
            extra={
                "fields": {
                    "execution_id": record.execution_id,
                    "tenant": spec.tenant,
                    "runtime": spec.request.runtime.value,
                    "mode": spec.request.mode.value,
                    "deduplicated": not created,
                    "labels": dict(spec.labels),
                }
            },
        )
        return record.execution_id

    def get(
        self,
        tenant: str,
        execution_id: str,
        wait_s: float = 0.0,
        wake: threading.Event | None = None,
    ) -> Job:
        """`wake`: also ends the wait when set (the servicer passes its call-ended event)."""
        with self._lock:
            record = self._store.get(tenant, execution_id)
            if record.state.finished or wait_s <= 0 or self._waiters >= self._max_waiters:
                return _snapshot(record)
            event = wake if wake is not None else threading.Event()
            self._watchers[execution_id].add(event)
            self._waiters += 1
        try:
            event.wait(wait_s)
        finally:
            with self._lock:
                self._waiters -= 1
                self._watchers.get(execution_id, set()).discard(event)
        with self._lock:
            return _snapshot(record)

    def cancel(
        self,
        tenant: str,
        execution_id: str,
        wait_s: float = 0.0,
        wake: threading.Event | None = None,
    ) -> Job:
        with self._lock:
            record = self._store.get(tenant, execution_id)
            if record.state.finished:
                return _snapshot(record)
            log.info(
                "execution cancel requested",
                extra={
                    "fields": {
                        "execution_id": execution_id,
                        "tenant": tenant,
                        "state": record.state.value,
                    }
                },
            )
            if self._unqueue_locked(record):
                self._finish_locked(record, JobState.CANCELLED, None)
                return _snapshot(record)
            self._live[execution_id].cancel.set()
        return self.get(tenant, execution_id, wait_s, wake)

    def queued(self) -> int:
        with self._lock:
            return self._store.queued

    def start_draining(self) -> None:
        with self._lock:
            self._draining = True
            for jobs in self._waiting.values():
                for record in jobs.values():
                    self._finish_locked(record, JobState.CANCELLED, None)
            self._waiting.clear()
            for live in self._live.values():
                if live.record.state is JobState.QUEUED:
                    live.cancel.set()  # waiting in the engine for a worker: Cancelled, nothing ran

    def close(self, grace_s: float) -> None:
        self.start_draining()
        deadline = time.monotonic() + grace_s
        for thread in self._threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._live)
            for live in self._live.values():
                live.cancel.set()
        if left:
            log.warning(
                "drain grace over: killing running asynchronous executions",
                extra={"fields": {"execution_ids": left}},
            )
        for thread in self._threads():
            thread.join(JOIN_AFTER_KILL_S)
            if thread.is_alive():
                log.error("an asynchronous execution's thread did not end after its kill")

    # -- scheduling ------------------------------------------------------------------------------

    def _on_slot_freed(self, tenant: str) -> None:
        with self._lock:
            self._dispatch_locked()

    def _dispatch_locked(self) -> None:
        """Start every waiting job that may start now: each free node slot goes to the tenant
        with the fewest jobs running here (then the oldest waiting job), skipping tenants at
        their concurrency limit."""
        if self._draining:
            return
        blocked: set[str] = set()
        while len(self._live) < self._max_running:
            running = Counter(live.spec.tenant for live in self._live.values())
            candidates = [t for t in self._waiting if t not in blocked]
            if not candidates:
                return
            tenant = min(
                candidates,
                key=lambda t: (running[t], next(iter(self._waiting[t].values())).submitted_at_s),
            )
            execution_id, record = next(iter(self._waiting[tenant].items()))
            spec = record.spec
            assert spec is not None
            if not self._quota.try_acquire(tenant, spec.max_concurrent_executions):
                blocked.add(tenant)
                continue
            self._unqueue_locked(record)
            live = _Live(record, spec)
            live.thread = threading.Thread(
                target=self._run,
                args=(record, live),
                name=f"sandboxd-job-{execution_id[:8]}",
                daemon=True,  # close() joins them; a crash must not hang the exit
            )
            self._live[execution_id] = live
            live.thread.start()

    def _unqueue_locked(self, record: JobRecord) -> bool:
        """Take a job out of its tenant's queue; False if it was not waiting there."""
        jobs = self._waiting.get(record.tenant)
        if jobs is None or jobs.pop(record.execution_id, None) is None:
            return False
        if not jobs:
            del self._waiting[record.tenant]
        return True

    def _run(self, record: JobRecord, live: _Live) -> None:
        spec = live.spec
        dispatched = time.monotonic()
        queued_us = int(max(0.0, self._store.now() - record.submitted_at_s) * 1e6)

        def on_start(_started: Started) -> None:
            with self._lock:
                self._store.mark_running(record)

        outcome: Outcome | None = None
        state = JobState.DONE
        try:
            outcome = self._run_job(spec, record.execution_id, live.cancel, on_start, queued_us)
        except (Cancelled, PoolClosed):
            state = JobState.CANCELLED  # no worker was taken: nothing ran
        except RuntimeUnavailable as e:
            outcome = _internal_error(record.execution_id, f"sandboxd: {e}\n")
        except Exception:
            request_id = uuid.uuid4().hex
            log.exception(
                "internal error running an asynchronous execution",
                extra={
                    "fields": {
                        "execution_id": record.execution_id,
                        "tenant": spec.tenant,
                        "request_id": request_id,
                    }
                },
            )
            outcome = _internal_error(
                record.execution_id, f"sandboxd: internal error (request id {request_id})\n"
            )
        finally:
            with self._lock:
                self._finish_locked(record, state, outcome)
                del self._live[record.execution_id]
            self._quota.release(spec.tenant, time.monotonic() - dispatched)  # dispatches

    def _finish_locked(self, record: JobRecord, state: JobState, outcome: Outcome | None) -> None:
        self._store.finish(record, state, outcome)
        for event in self._watchers.pop(record.execution_id, ()):
            event.set()
        if state is JobState.CANCELLED:
            log.info(
                "execution cancelled",
                extra={
                    "fields": {
                        "execution_id": record.execution_id,
                        "tenant": record.tenant,
                        "draining": self._draining,
                    }
                },
            )

    def _threads(self) -> list[threading.Thread]:
        with self._lock:
            return [live.thread for live in self._live.values() if live.thread is not None]


def _snapshot(record: JobRecord) -> Job:
    return Job(record.execution_id, record.tenant, record.state, record.outcome)


def _internal_error(execution_id: str, message: str) -> Outcome:
    return Outcome(
        verdict=Verdict.INTERNAL_ERROR, stderr=message.encode(), execution_id=execution_id
    )
