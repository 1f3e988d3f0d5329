"""The Redis async backend (`--redis-url`): jobs shared by every node on one Redis.

Running a job, dispatch, long-polls and the end of a drain are sandboxd.jobs.core's (shared
with the embedded backend); every read and write of Redis is a step of steps.py (which also
lists the keys). This module keeps what is held on this node and the three loops that move
it: the consumer (take entries), the events (wake-ups and cancels) and the renewals.

Flow. Submit checks the tenant's share (max_queued_jobs, max_async_bytes) and the cluster's
bound, stores the request and puts the id in the tenant's backlog (submit.lua). A backlog
feeds the stream while its tenant has fewer entries there than its concurrency limit (and
again each time one of them finishes, _finish.lua), so the stream holds at most a tenant's
share of entries ahead of another tenant's job, however many it submitted. Each node reads
new entries (XREADGROUP) only while it has room: fewer than `max_running` jobs running on it,
plus waiting ones held back by their tenant's cluster-wide concurrency limit (at most
`max_running` of those). A taken entry is checked and marked (claim.lua), gets a lease on
one of its tenant's slots (quotas.py; a tenant at its limit waits here, not holding up
other tenants' jobs), then runs through `RunJob` in its own thread; RUNNING once a worker
took it (start.lua); the result is written by finish.lua, which writes only the first result
of a job. A node renews its entries (XCLAIM JUSTID) every `visibility_s / 3`; an entry idle
longer than `visibility_s` belonged to a node that died, and another node takes it over
(XAUTOCLAIM) and runs the job again: at-least-once execution, exactly one result.

Cancel (cancel.lua, any node): a job nobody took is CANCELLED at once; otherwise the cancel
is published and recorded on the job, and the node holding it kills the worker (DONE,
KILLED) or, before a worker was taken, cancels it (CANCELLED). The node also checks the
recorded flag with each renewal, so a lost message only delays the kill.

Redis unreachable: Submit, GetExecution and CancelExecution are UNAVAILABLE (RedisDown);
jobs already running finish and their results are written once Redis is back (retried);
nothing accepted is lost as long as Redis keeps its data (AOF, `appendfsync always`).

Drain: the node stops taking entries, gives back those it took but did not start
(requeue.lua: another node runs them), and gives running jobs the grace; a job still running
after the grace is killed and its result not written, so another node runs it again after
`visibility_s`."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from sandboxd_pool import Outcome, Verdict

from ..errors import QuotaExceeded, Unavailable
from ..jobs.contract import Job, JobSpec, JobState, RunJob
from ..jobs.core import Held, JobsCore, internal_error
from .codec import CodecError, decode_spec
from .link import RedisDown, RedisLink
from .quotas import Lease, RedisQuotas
from .steps import JobSteps, text

log = logging.getLogger("sandboxd.jobs")

READ_BLOCK_MS = 1000  # a read waits this long for new entries (less with jobs waiting)
RETRY_WAITING_S = 0.1  # jobs held back by a tenant limit try again this often
REDIS_RETRY_S = 0.5  # after a failed call, the loops wait this long
POLL_S = 1.0  # a long-poll also re-reads the job this often (a lost "done" message)
# A node's heartbeat key (node:NAME) lives this many visibility timeouts and is renewed every
# third of one; a consumer of the group whose heartbeat expired, idle as long, with no pending
# entry, belonged to a node that is gone and is removed from the group.
CONSUMER_GRACE_VISIBILITIES = 3


@dataclass(frozen=True)
class RedisJobsConfig:
    node: str  # this node's consumer name in the group
    max_running: int  # jobs running at once on this node
    max_waiters: int  # long-polls waiting at once on this node
    retention_s: float
    max_unfinished_jobs: int  # cluster-wide: accepted and not finished
    visibility_s: float  # an entry idle this long is taken over by another node


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(eq=False)
class _Held(Held):
    """A stream entry this node took and has not finished."""

    entry: str = ""
    attempt: int = 0
    client_cancel: bool = False  # the cancel came from CancelExecution (not from a drain)
    lease: Lease | None = None


class RedisJobs(JobsCore[_Held]):
    """Implements jobs.JobBackend for a node of the cluster."""

    GRACE_OVER = (
        "drain grace over: killing running asynchronous executions; another node runs them again"
    )

    def __init__(
        self, run: RunJob, link: RedisLink, quotas: RedisQuotas, config: RedisJobsConfig
    ) -> None:
        super().__init__(
            run, max_running=config.max_running, max_waiters=config.max_waiters, poll_s=POLL_S
        )
        self.config = config
        self._quotas = quotas
        self.steps = JobSteps(
            link, retention_s=config.retention_s, visibility_s=config.visibility_s
        )
        self._r = link.client
        self._grace_ms = CONSUMER_GRACE_VISIBILITIES * self.steps.visibility_ms
        self._waiting: OrderedDict[str, _Held] = OrderedDict()  # taken, no lease yet
        self._stop = threading.Event()  # the loops end
        self._wake = threading.Event()  # the consumer looks again (a slot was freed)
        self._group_ready = False
        self._threads = [
            threading.Thread(target=self._consume_loop, name="sandboxd-jobs-consume", daemon=True),
            threading.Thread(target=self._events_loop, name="sandboxd-jobs-events", daemon=True),
            threading.Thread(target=self._renew_loop, name="sandboxd-jobs-renew", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- JobBackend ------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> str:
        if self._draining:
            raise Unavailable("the node is draining (shutting down); submit to another node")
        execution_id, created = self.steps.submit(
            uuid.uuid4().hex, spec, self.config.max_unfinished_jobs
        )
        self._log_submitted(spec, execution_id, deduplicated=not created)
        return execution_id

    def queued(self) -> int:
        with self._lock:
            return len(self._waiting)

    def start_draining(self) -> None:
        with self._lock:
            if self._draining:
                return
            self._draining = True
            waiting = list(self._waiting.values())
            self._waiting.clear()
            not_started = [h for h in self._live.values() if not h.started]
        self._wake.set()
        for held in waiting:
            self._requeue(held)
        for held in not_started:
            held.cancel.set()  # no worker taken yet: Cancelled, then requeued by its thread

    def close(self, grace_s: float) -> None:
        super().close(grace_s)
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        # This node's consumer, now that it reads nothing more (kept if it still has pending
        # entries: jobs killed after the grace, which another node takes over, then sweeps it).
        with contextlib.suppress(RedisDown, redis.RedisError):
            self.steps.forget_node(self.config.node)
            self.steps.sweep_consumers(0, only=self.config.node)

    # -- storage primitives (sandboxd.jobs.core) -------------------------------------------------

    def _read(self, tenant: str, execution_id: str) -> Job:
        return self.steps.read(tenant, execution_id)

    def _cancel(self, tenant: str, execution_id: str) -> Job | None:
        """cancel.lua (see steps.py); a job held here is killed at once, without waiting for
        the published message. The answer is always read afterwards."""
        state = self.steps.cancel(tenant, execution_id)
        self._log_cancel_requested(tenant, execution_id, state)
        if state not in (JobState.DONE.value, JobState.CANCELLED.value):
            self._cancel_here(execution_id)
        return None

    def _next_waiting(self, blocked: set[str]) -> _Held | None:
        """The oldest taken job of a tenant not blocked (the stream is fair already)."""
        return next((h for h in self._waiting.values() if h.spec.tenant not in blocked), None)

    def _take_waiting(self, held: _Held) -> bool:
        return self._waiting.pop(held.execution_id, None) is not None

    def _try_slot(self, held: _Held) -> bool:
        lease = self._quotas.try_lease(held.spec.tenant, held.spec.max_concurrent_executions)
        if isinstance(lease, QuotaExceeded):
            return False
        held.lease = lease
        return True

    def _release_slot(self, held: _Held, took_s: float | None) -> None:
        if held.lease is not None:
            self._quotas.release(held.lease)  # measures its own time

    def _on_started(self, held: _Held) -> None:
        try:
            go_on = self.steps.start(held.execution_id, self.config.node)
        except RedisDown:
            go_on = True  # run it; the result is written once Redis is back
        if not go_on:
            self._kill(held)

    def _finish(self, held: _Held, state: JobState, outcome: Outcome | None) -> None:
        if self._draining and not held.client_cancel:
            if state is JobState.CANCELLED:
                self._requeue(held)  # never started here: another node runs it
            elif not held.cancel.is_set():
                self._write(held.execution_id, held.entry, state, outcome)
            # else killed by the drain: left pending, another node runs it again
        else:
            self._write(held.execution_id, held.entry, state, outcome)

    def _after_run(self, held: _Held) -> None:
        self._wake.set()

    def _run(self, held: _Held) -> None:
        log.info(
            "execution taken",
            extra={
                "fields": {
                    "execution_id": held.execution_id,
                    "tenant": held.spec.tenant,
                    "node": self.config.node,
                    "attempt": held.attempt,
                }
            },
        )
        super()._run(held)

    # -- writing ---------------------------------------------------------------------------------

    def _write(
        self, execution_id: str, entry: str, state: JobState, outcome: Outcome | None
    ) -> None:
        """Write the result, retrying while Redis is unreachable (until the node stops)."""
        while True:
            try:
                self.steps.finish(execution_id, entry, state, outcome)
                break
            except RedisDown:
                if self._stop.wait(REDIS_RETRY_S):
                    log.warning(
                        "stopped before Redis came back: the result was not written; another "
                        "node runs the execution again",
                        extra={"fields": {"execution_id": execution_id}},
                    )
                    return
        if state is JobState.CANCELLED:
            self._log_cancelled(execution_id)

    def _requeue(self, held: _Held) -> None:
        # Redis unreachable: still pending under this node, another node takes it after
        # visibility_s
        with contextlib.suppress(RedisDown):
            self.steps.requeue(held.entry, held.execution_id)

    def _kill(self, held: _Held) -> None:
        held.client_cancel = True
        held.cancel.set()

    def _cancel_here(self, execution_id: str) -> None:
        with self._lock:
            held = self._live.get(execution_id)
            waiting = self._waiting.pop(execution_id, None)
        if held is not None:
            self._kill(held)
        if waiting is not None:  # taken, never started: nothing ran
            self._write(execution_id, waiting.entry, JobState.CANCELLED, None)

    # -- the consumer: take entries, hold them until their tenant has a slot, start them --------

    def _consume_loop(self) -> None:
        last_autoclaim = 0.0
        cursor = "0-0"
        while not self._stop.is_set():
            try:
                self._ensure_group()
                self._dispatch()
                if self._draining:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                room = self._room()
                if room <= 0:
                    self._wake.wait(RETRY_WAITING_S if self._waiting else READ_BLOCK_MS / 1000)
                    self._wake.clear()
                    continue
                now = time.monotonic()
                if now - last_autoclaim >= self.steps.visibility_ms / 2000:
                    last_autoclaim = now
                    self._sweep_consumers()
                    cursor, entries = self.steps.autoclaim(self.config.node, cursor, room)
                    if entries:
                        self._take(entries, reclaimed=True)
                        continue
                block_ms = int(RETRY_WAITING_S * 1000) if self._waiting else READ_BLOCK_MS
                entries = self.steps.read_new(self.config.node, room, block_ms)
                if entries:
                    self._take(entries, reclaimed=False)
            except RedisDown:
                self._group_ready = False
                self._stop.wait(REDIS_RETRY_S)
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):  # Redis lost its data: make the group again
                    self._group_ready = False
                else:
                    log.exception("reading the job stream failed")
                self._stop.wait(REDIS_RETRY_S)
            except Exception:
                log.exception("reading the job stream failed")
                self._stop.wait(REDIS_RETRY_S)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        self.steps.beat(self.config.node, self._grace_ms)  # before the first read makes it
        self.steps.ensure_group()
        self._group_ready = True

    def _sweep_consumers(self) -> None:
        removed = self.steps.sweep_consumers(self._grace_ms)
        if removed:
            log.info(
                "removed the job consumers of nodes that are gone",
                extra={"fields": {"consumers": removed, "idle_s": self._grace_ms / 1000}},
            )

    def _room(self) -> int:
        """How many entries to read: free running slots not already spoken for by waiting
        jobs that could start, and at most `max_running` jobs waiting."""
        with self._lock:
            free = self.config.max_running - len(self._live)
            if free <= 0:
                return 0
            return min(free, self.config.max_running - len(self._waiting))

    def _take(self, entries: Sequence[tuple[str, str]], *, reclaimed: bool) -> None:
        for entry, execution_id in entries:
            claim = self.steps.claim(entry, execution_id, self.config.node)
            if claim.verdict == "skip":
                continue
            if claim.verdict == "cancelled":
                self._finish_orphan_cancel(execution_id, entry, claim.state)
                continue
            try:
                spec = decode_spec(claim.payload)
            except (CodecError, ValueError, KeyError) as e:
                log.error(
                    "an asynchronous execution's stored request cannot be read",
                    extra={"fields": {"execution_id": execution_id, "error": repr(e)}},
                )
                self._write(
                    execution_id,
                    entry,
                    JobState.DONE,
                    internal_error(execution_id, "sandboxd: the stored request is unreadable\n"),
                )
                continue
            held = _Held(execution_id, spec, claim.queued_us, entry=entry, attempt=claim.attempt)
            if reclaimed:
                log.warning(
                    "execution taken over from a node that stopped renewing it",
                    extra={
                        "fields": {
                            "execution_id": execution_id,
                            "tenant": spec.tenant,
                            "state": claim.state,
                            "attempt": held.attempt,
                        }
                    },
                )
            with self._lock:
                self._waiting[execution_id] = held
        self._dispatch()

    def _finish_orphan_cancel(self, execution_id: str, entry: str, state: str) -> None:
        """A cancel asked while the job's node was gone (or before it started here)."""
        if state == JobState.RUNNING.value:
            outcome = Outcome(
                verdict=Verdict.KILLED,
                stderr=b"sandboxd: cancelled; the node running it had stopped\n",
                execution_id=execution_id,
            )
            self._write(execution_id, entry, JobState.DONE, outcome)
        else:
            self._write(execution_id, entry, JobState.CANCELLED, None)

    # -- events and renewals ---------------------------------------------------------------------

    def _events_loop(self) -> None:
        while not self._stop.is_set():
            pubsub: Any = self._r.pubsub(ignore_subscribe_messages=True)
            try:
                self._follow_events(pubsub)
            except RedisDown:
                self._stop.wait(REDIS_RETRY_S)
            except Exception:
                log.exception("the job events subscription failed")
                self._stop.wait(REDIS_RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _follow_events(self, pubsub: Any) -> None:
        link = self.steps.link
        link.call(lambda: pubsub.subscribe(self.steps.channel))
        self.waiters.wake_all()  # whatever finished while unsubscribed
        while not self._stop.is_set():
            message = link.call(lambda: pubsub.get_message(timeout=1.0))
            if message is not None and message.get("type") == "message":
                self._on_event(text(message["data"]))

    def _on_event(self, data: str) -> None:
        kind, _, execution_id = data.partition(":")
        if kind == "done":
            self.waiters.wake(execution_id)
        elif kind == "cancel":
            self._cancel_here(execution_id)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.steps.visibility_ms / 3000):
            with contextlib.suppress(RedisDown):
                self.steps.beat(self.config.node, self._grace_ms)
            with self._lock:
                held = list(self._live.values()) + list(self._waiting.values())
            if not held:
                continue
            try:
                flags = self.steps.renew(
                    self.config.node, [(h.entry, h.execution_id) for h in held]
                )
            except RedisDown:
                continue
            except Exception:
                log.exception("renewing this node's jobs failed")
                continue
            for h, cancelled in zip(held, flags, strict=True):
                if cancelled:
                    self._cancel_here(h.execution_id)
