"""The Redis async backend (`--redis-url`): jobs shared by every node on one Redis.

Keys (prefix `sandboxd:`; the scripts in scripts/ make every step atomic):

    jobs                     the stream; each entry holds only an execution id. Consumer
                             group `sandboxd`, one consumer per node process; the consumer
                             of a node gone for 3 visibility timeouts is removed
                             (consumers_sweep.lua), a node that drains removes its own
    node:NAME                a node's heartbeat (TTL 3 visibility timeouts)
    job:ID                   hash: tenant, state, submitted_ms, entry, node, attempts,
                             idem (the idempotency key's name), cancel
    job:ID:req               the request (codec.py), deleted when the job finishes: a
                             64 MiB stdin is one key, never part of a stream entry
    job:ID:result            the result (codec.py); TTL = the retention
    idem:TENANT:SHA256(key)  execution id of the tenant's idempotency key; TTL = the retention
                             once the job finished
    tenant:TENANT            hash: unfinished (jobs accepted, not finished), bytes (what they
                             reserve: request + 3 x max_output_bytes), streamed (of them,
                             entries in the stream), limit (its max_concurrent_executions)
    backlog:TENANT           list: ids of the tenant's jobs not in the stream yet, oldest first
    unfinished               the cluster's jobs accepted and not finished (--max-queued-jobs)
    events                   pub/sub channel: "done:ID" (wakes long-polls on every node),
                             "cancel:ID" (reaches the node running ID)

Flow. Submit checks the tenant's share (max_queued_jobs, max_async_bytes) and the cluster's
bound, stores the request and puts the id in the tenant's backlog (submit.lua). A backlog
feeds the stream while its tenant has fewer entries there than its concurrency limit (and
again each time one of them finishes, _finish.lua), so the stream holds at most a tenant's
share of entries ahead of another tenant's job, however many it submitted. Each node reads
new entries (XREADGROUP) only while it has room: fewer than `max_running` jobs running on it, plus
waiting ones held back by their tenant's cluster-wide concurrency limit (at most
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
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from sandboxd_pool import Cancelled, Outcome, PoolClosed, RuntimeUnavailable, Started, Verdict

from ..errors import NotFound, QuotaExceeded, Unavailable
from ..jobs.contract import Job, JobSpec, JobState, RunJob
from ..jobs.store import reserved_bytes
from .codec import CodecError, decode_outcome, decode_spec, encode_outcome, encode_spec
from .link import RedisDown, RedisLink
from .quotas import Lease, RedisQuotas

log = logging.getLogger("sandboxd.jobs")

GROUP = "sandboxd"
READ_BLOCK_MS = 1000  # a read waits this long for new entries (less with jobs waiting)
RETRY_WAITING_S = 0.1  # jobs held back by a tenant limit try again this often
REDIS_RETRY_S = 0.5  # after a failed call, the loops wait this long
POLL_S = 1.0  # a long-poll also re-reads the job this often (a lost "done" message)
WAKE_POLL_S = 0.25  # and looks this often whether its call has ended
JOIN_AFTER_KILL_S = 10.0
# A node's heartbeat key (node:NAME) lives this many visibility timeouts and is renewed every
# third of one; a consumer of the group whose heartbeat expired, idle as long, with no pending
# entry, belonged to a node that is gone and is removed from the group.
CONSUMER_GRACE_VISIBILITIES = 3
SUBMIT_UNAVAILABLE = (
    "asynchronous executions cannot be accepted or read until it is back; "
    "synchronous Execute still works"
)


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


@dataclass
class _Held:
    """A stream entry this node took and has not finished."""

    execution_id: str
    entry: str
    spec: JobSpec
    queued_us: int
    attempt: int
    cancel: threading.Event = field(default_factory=threading.Event)
    client_cancel: bool = False  # the cancel came from CancelExecution (not from a drain)
    started: bool = False  # a worker took it
    lease: Lease | None = None
    thread: threading.Thread | None = None


class RedisJobs:
    """Implements jobs.JobBackend for a node of the cluster."""

    def __init__(
        self, run: RunJob, link: RedisLink, quotas: RedisQuotas, config: RedisJobsConfig
    ) -> None:
        self._run_job = run
        self._link = link
        self._quotas = quotas
        self.config = config
        self._r = link.client
        self._stream = link.key("jobs")
        self._channel = link.key("events")
        self._retention_ms = max(1, int(config.retention_s * 1000))
        self._visibility_ms = max(1000, int(config.visibility_s * 1000))
        self._grace_ms = CONSUMER_GRACE_VISIBILITIES * self._visibility_ms
        self._heartbeat = link.key("node", config.node)
        self._scripts = {
            "submit": link.script("_finish", "submit"),
            "claim": link.script("claim"),
            "start": link.script("start"),
            "finish": link.script("_finish", "finish"),
            "cancel": link.script("_finish", "cancel"),
            "requeue": link.script("requeue"),
            "consumers_sweep": link.script("consumers_sweep"),
        }
        self._lock = threading.Lock()
        self._waiting: OrderedDict[str, _Held] = OrderedDict()  # taken, no lease yet
        self._live: dict[str, _Held] = {}  # leased, running in a thread
        self._watchers: dict[str, set[threading.Event]] = {}
        self._waiters = 0
        self._draining = False
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
        execution_id = uuid.uuid4().hex
        idem_key = self._idem_key(spec.tenant, spec.idempotency_key)
        payload = encode_spec(spec)
        reserved = reserved_bytes(spec)
        code, value = self._call(
            lambda: self._scripts["submit"](
                keys=[self._stream, self._job_key(execution_id), idem_key],
                args=[
                    execution_id,
                    spec.tenant,
                    "1" if spec.idempotency_key else "0",
                    payload,
                    self.config.max_unfinished_jobs,
                    self._link.prefix,
                    spec.max_queued_jobs,
                    reserved,
                    spec.max_async_bytes,
                    spec.max_concurrent_executions,
                ],
            )
        )
        code = int(code)
        if code < 0:
            raise _refusal(code, int(value), spec, reserved, self.config.max_unfinished_jobs)
        result_id = _text(value)
        log.info(
            "execution submitted",
            extra={
                "fields": {
                    "execution_id": result_id,
                    "tenant": spec.tenant,
                    "runtime": spec.request.runtime.value,
                    "mode": spec.request.mode.value,
                    "deduplicated": code == 0,
                    "labels": dict(spec.labels),
                }
            },
        )
        return result_id

    def get(
        self,
        tenant: str,
        execution_id: str,
        wait_s: float = 0.0,
        wake: threading.Event | None = None,
    ) -> Job:
        job = self._read(tenant, execution_id)
        if job.state.finished or wait_s <= 0:
            return job
        # Set by a "done" message for this id; `wake` (the call ended) is checked apart, so a
        # "done" arriving while the state is read is never taken for the end of the call.
        event = threading.Event()
        with self._lock:
            if self._waiters >= self.config.max_waiters:
                return job
            self._waiters += 1
            self._watchers.setdefault(execution_id, set()).add(event)
        deadline = time.monotonic() + wait_s
        try:
            while True:
                event.clear()  # before the read: a "done" during it makes the wait return
                job = self._read(tenant, execution_id)
                left = deadline - time.monotonic()
                if job.state.finished or left <= 0 or (wake is not None and wake.is_set()):
                    return job
                event.wait(min(POLL_S if wake is None else WAKE_POLL_S, left))
        finally:
            with self._lock:
                self._waiters -= 1
                watchers = self._watchers.get(execution_id)
                if watchers is not None:
                    watchers.discard(event)
                    if not watchers:
                        del self._watchers[execution_id]

    def cancel(
        self,
        tenant: str,
        execution_id: str,
        wait_s: float = 0.0,
        wake: threading.Event | None = None,
    ) -> Job:
        (state,) = self._call(
            lambda: self._scripts["cancel"](
                keys=[self._stream, self._job_key(execution_id)],
                args=[
                    tenant,
                    GROUP,
                    self._channel,
                    self._retention_ms,
                    execution_id,
                    self._link.prefix,
                ],
            )
        )
        if _text(state) == "missing":
            raise _not_found(execution_id, self.config.retention_s)
        log.info(
            "execution cancel requested",
            extra={
                "fields": {"execution_id": execution_id, "tenant": tenant, "state": _text(state)}
            },
        )
        if _text(state) not in (JobState.DONE.value, JobState.CANCELLED.value):
            self._cancel_here(execution_id)  # held by this node: no need to wait for the message
        return self.get(tenant, execution_id, wait_s, wake)

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
        self.start_draining()
        deadline = time.monotonic() + grace_s
        for thread in self._job_threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._live.values())
        if left:
            log.warning(
                "drain grace over: killing running asynchronous executions; another node runs "
                "them again",
                extra={"fields": {"execution_ids": [h.execution_id for h in left]}},
            )
        for held in left:
            held.cancel.set()
        for thread in self._job_threads():
            thread.join(JOIN_AFTER_KILL_S)
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        # This node's consumer, now that it reads nothing more (kept if it still has pending
        # entries: jobs killed after the grace, which another node takes over, then sweeps it).
        with contextlib.suppress(RedisDown, redis.RedisError):
            self._call(lambda: self._r.delete(self._heartbeat))
            self._sweep_consumers(0, only=self.config.node)

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, tenant: str, execution_id: str) -> Job:
        job_key = self._job_key(execution_id)

        def read() -> list[Any]:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.hmget(job_key, "tenant", "state")
                pipe.get(job_key + ":result")
                return pipe.execute()

        (owner, state), result = self._call(read)
        if owner is None or _text(owner) != tenant:
            raise _not_found(execution_id, self.config.retention_s)
        job_state = JobState(_text(state))
        outcome = None
        if job_state is JobState.DONE:
            if result is None:
                raise _not_found(execution_id, self.config.retention_s)
            outcome = decode_outcome(result)
        return Job(execution_id, tenant, job_state, outcome)

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
                if now - last_autoclaim >= self._visibility_ms / 2000:
                    last_autoclaim = now
                    self._sweep_consumers(self._grace_ms)
                    cursor, entries = self._autoclaim(cursor, room)
                    if entries:
                        self._take(entries, reclaimed=True)
                        continue
                block_ms = int(RETRY_WAITING_S * 1000) if self._waiting else READ_BLOCK_MS
                for _stream, entries in self._read_new(room, block_ms) or ():
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

    def _read_new(self, count: int, block_ms: int) -> Any:
        return self._call(
            lambda: self._r.xreadgroup(
                GROUP, self.config.node, {self._stream: ">"}, count=count, block=block_ms
            )
        )

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        self._beat()  # before the first read makes this node's consumer
        try:
            self._call(lambda: self._r.xgroup_create(self._stream, GROUP, id="0", mkstream=True))
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    def _beat(self) -> None:
        """This node's heartbeat: its consumer is not swept while the key lives."""
        self._call(lambda: self._r.set(self._heartbeat, "1", px=self._grace_ms))

    def _sweep_consumers(self, min_idle_ms: int, only: str = "") -> list[str]:
        """Remove the group's consumers of nodes that are gone (consumers_sweep.lua): no
        heartbeat, no pending entry, idle at least `min_idle_ms`; `only`: just that one."""
        prefix = self._link.key("node", "")
        removed = [
            _text(name)
            for name in self._call(
                lambda: self._scripts["consumers_sweep"](
                    keys=[self._stream], args=[GROUP, min_idle_ms, only, prefix]
                )
            )
        ]
        if removed and not only:
            log.info(
                "removed the job consumers of nodes that are gone",
                extra={"fields": {"consumers": removed, "idle_s": min_idle_ms / 1000}},
            )
        return removed

    def _room(self) -> int:
        """How many entries to read: free running slots not already spoken for by waiting
        jobs that could start, and at most `max_running` jobs waiting."""
        with self._lock:
            free = self.config.max_running - len(self._live)
            if free <= 0:
                return 0
            return min(free, self.config.max_running - len(self._waiting))

    def _autoclaim(self, cursor: str, count: int) -> tuple[str, list[Any]]:
        reply = self._call(
            lambda: self._r.xautoclaim(
                self._stream,
                GROUP,
                self.config.node,
                min_idle_time=self._visibility_ms,
                start_id=cursor,
                count=count,
            )
        )
        next_cursor, entries = reply[0], reply[1]
        return _text(next_cursor), [e for e in entries if e and e[1]]

    def _take(self, entries: Sequence[Any], *, reclaimed: bool) -> None:
        for entry_id, fields in entries:
            entry = _text(entry_id)
            execution_id = _text(fields.get(b"id", b""))
            reply = self._claim(entry, execution_id)
            verdict = _text(reply[0])
            if verdict == "skip":
                continue
            if verdict == "cancelled":
                self._finish_orphan_cancel(execution_id, entry, _text(reply[1]))
                continue
            _, state, payload, submitted_ms, now_ms, attempt = reply
            try:
                spec = decode_spec(payload)
            except (CodecError, ValueError, KeyError) as e:
                log.error(
                    "an asynchronous execution's stored request cannot be read",
                    extra={"fields": {"execution_id": execution_id, "error": repr(e)}},
                )
                self._write(
                    execution_id,
                    entry,
                    JobState.DONE,
                    _internal_error(execution_id, "sandboxd: the stored request is unreadable\n"),
                )
                continue
            held = _Held(
                execution_id=execution_id,
                entry=entry,
                spec=spec,
                queued_us=max(0, int(now_ms) - int(submitted_ms)) * 1000,
                attempt=int(attempt),
            )
            if reclaimed:
                log.warning(
                    "execution taken over from a node that stopped renewing it",
                    extra={
                        "fields": {
                            "execution_id": execution_id,
                            "tenant": spec.tenant,
                            "state": _text(state),
                            "attempt": held.attempt,
                        }
                    },
                )
            with self._lock:
                self._waiting[execution_id] = held
        self._dispatch()

    def _claim(self, entry: str, execution_id: str) -> Any:
        return self._call(
            lambda: self._scripts["claim"](
                keys=[self._stream, self._job_key(execution_id)],
                args=[GROUP, entry, self.config.node],
            )
        )

    def _dispatch(self) -> None:
        """Start waiting jobs, oldest first, while the node has room and their tenant a slot."""
        blocked: set[str] = set()
        while True:
            with self._lock:
                if self._draining or len(self._live) >= self.config.max_running:
                    return
                candidates = [h for h in self._waiting.values() if h.spec.tenant not in blocked]
            if not candidates:
                return
            held = candidates[0]
            lease = self._quotas.try_lease(held.spec.tenant, held.spec.max_concurrent_executions)
            if isinstance(lease, QuotaExceeded):
                blocked.add(held.spec.tenant)
                continue
            with self._lock:
                if self._waiting.pop(held.execution_id, None) is None:  # cancelled meanwhile
                    release: Lease | None = lease
                else:
                    release = None
                    held.lease = lease
                    held.thread = threading.Thread(
                        target=self._run,
                        args=(held,),
                        name=f"sandboxd-job-{held.execution_id[:8]}",
                        daemon=True,
                    )
                    self._live[held.execution_id] = held
                    held.thread.start()
            if release is not None:
                self._quotas.release(release)

    # -- running one job -------------------------------------------------------------------------

    def _run(self, held: _Held) -> None:
        spec = held.spec
        log.info(
            "execution taken",
            extra={
                "fields": {
                    "execution_id": held.execution_id,
                    "tenant": spec.tenant,
                    "node": self.config.node,
                    "attempt": held.attempt,
                }
            },
        )

        def on_start(_started: Started) -> None:
            held.started = True
            try:
                go_on = int(
                    self._call(
                        lambda: self._scripts["start"](
                            keys=[self._job_key(held.execution_id)], args=[self.config.node]
                        )
                    )
                )
            except RedisDown:
                go_on = 1  # run it; the result is written once Redis is back
            if go_on != 1:
                held.client_cancel = True
                held.cancel.set()

        outcome: Outcome | None = None
        state = JobState.DONE
        try:
            outcome = self._run_job(spec, held.execution_id, held.cancel, on_start, held.queued_us)
        except (Cancelled, PoolClosed):
            state = JobState.CANCELLED  # no worker was taken: nothing ran
        except RuntimeUnavailable as e:
            outcome = _internal_error(held.execution_id, f"sandboxd: {e}\n")
        except Exception:
            request_id = uuid.uuid4().hex
            log.exception(
                "internal error running an asynchronous execution",
                extra={
                    "fields": {
                        "execution_id": held.execution_id,
                        "tenant": spec.tenant,
                        "request_id": request_id,
                    }
                },
            )
            outcome = _internal_error(
                held.execution_id, f"sandboxd: internal error (request id {request_id})\n"
            )
        finally:
            if held.lease is not None:
                self._quotas.release(held.lease)
            try:
                if self._draining and not held.client_cancel:
                    if state is JobState.CANCELLED:
                        self._requeue(held)  # never started here: another node runs it
                    elif not held.cancel.is_set():
                        self._write(held.execution_id, held.entry, state, outcome)
                    # else killed by the drain: left pending, another node runs it again
                else:
                    self._write(held.execution_id, held.entry, state, outcome)
            finally:
                with self._lock:
                    self._live.pop(held.execution_id, None)
                self._wake.set()

    def _write(
        self, execution_id: str, entry: str, state: JobState, outcome: Outcome | None
    ) -> None:
        """Write the result, retrying while Redis is unreachable (until the node stops)."""
        blob = encode_outcome(outcome) if outcome is not None else b""
        while True:
            try:
                self._call(
                    lambda: self._scripts["finish"](
                        keys=[self._stream, self._job_key(execution_id)],
                        args=[
                            state.value,
                            blob,
                            self._retention_ms,
                            GROUP,
                            self._channel,
                            execution_id,
                            entry,
                            self._link.prefix,
                        ],
                    )
                )
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
            log.info(
                "execution cancelled",
                extra={"fields": {"execution_id": execution_id, "draining": self._draining}},
            )

    def _requeue(self, held: _Held) -> None:
        # Redis unreachable: still pending under this node, another node takes it after
        # visibility_s
        with contextlib.suppress(RedisDown):
            self._call(
                lambda: self._scripts["requeue"](
                    keys=[self._stream, self._job_key(held.execution_id)],
                    args=[GROUP, held.entry, held.execution_id],
                )
            )

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

    def _kill(self, held: _Held) -> None:
        held.client_cancel = True
        held.cancel.set()

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
        self._call(lambda: pubsub.subscribe(self._channel))
        self._wake_all_watchers()  # whatever finished while unsubscribed
        while not self._stop.is_set():
            message = self._call(lambda: pubsub.get_message(timeout=1.0))
            if message is not None and message.get("type") == "message":
                self._on_event(_text(message["data"]))

    def _on_event(self, data: str) -> None:
        kind, _, execution_id = data.partition(":")
        if kind == "done":
            with self._lock:
                events = list(self._watchers.get(execution_id, ()))
            for event in events:
                event.set()
        elif kind == "cancel":
            self._cancel_here(execution_id)

    def _cancel_here(self, execution_id: str) -> None:
        with self._lock:
            held = self._live.get(execution_id)
            waiting = self._waiting.pop(execution_id, None)
        if held is not None:
            self._kill(held)
        if waiting is not None:  # taken, never started: nothing ran
            self._write(execution_id, waiting.entry, JobState.CANCELLED, None)

    def _wake_all_watchers(self) -> None:
        with self._lock:
            events = [e for watchers in self._watchers.values() for e in watchers]
        for event in events:
            event.set()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._visibility_ms / 3000):
            with contextlib.suppress(RedisDown):
                self._beat()
            with self._lock:
                held = list(self._live.values()) + list(self._waiting.values())
            if not held:
                continue
            try:
                flags = self._call(lambda held=held: self._renew(held))  # type: ignore[misc]
            except RedisDown:
                continue
            except Exception:
                log.exception("renewing this node's jobs failed")
                continue
            for h, flag in zip(held, flags, strict=True):
                if flag is not None and _text(flag) == "1":
                    self._cancel_here(h.execution_id)

    # -- helpers ---------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        return self._link.call(fn, SUBMIT_UNAVAILABLE)

    def _job_key(self, execution_id: str) -> str:
        return self._link.key("job", execution_id)

    def _idem_key(self, tenant: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._link.key("idem", tenant, digest)

    def _renew(self, held: Sequence[_Held]) -> list[Any]:
        """Reset the idle time of this node's entries (so no other node takes them over);
        the cancel flag of each job."""
        self._r.xclaim(
            self._stream, GROUP, self.config.node, 0, [h.entry for h in held], justid=True
        )
        with self._r.pipeline(transaction=False) as pipe:
            for h in held:
                pipe.hget(self._job_key(h.execution_id), "cancel")
            return pipe.execute()

    def _job_threads(self) -> list[threading.Thread]:
        with self._lock:
            return [h.thread for h in self._live.values() if h.thread is not None]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _refusal(
    code: int, value: int, spec: JobSpec, reserved: int, max_unfinished: int
) -> QuotaExceeded:
    """submit.lua's refusals (-1 cluster, -2 tenant's jobs, -3 tenant's bytes)."""
    if code == -2:
        return QuotaExceeded(
            f"tenant:{spec.tenant}:async_queued_jobs",
            f"tenant {spec.tenant!r} already has {value} asynchronous executions accepted and "
            f"not finished in the cluster, its limit (max_queued_jobs) is {spec.max_queued_jobs}",
            1.0,
        )
    if code == -3:
        return QuotaExceeded(
            f"tenant:{spec.tenant}:async_bytes",
            f"tenant {spec.tenant!r} has no room for this asynchronous execution: it needs "
            f"{reserved} bytes (its request plus room for 3 x max_output_bytes of output), "
            f"{max(0, spec.max_async_bytes - value)} of the tenant's {spec.max_async_bytes} "
            "(max_async_bytes) are free",
            1.0,
        )
    return QuotaExceeded(
        "cluster:async_unfinished_jobs",
        f"the cluster already has {value} asynchronous executions accepted and not "
        f"finished, the limit (--max-queued-jobs) is {max_unfinished}",
        1.0,
    )


def _not_found(execution_id: str, retention_s: float) -> NotFound:
    return NotFound(
        f"execution {execution_id!r} not found: unknown, another tenant's, or its "
        f"result expired ({retention_s:g} s after it finished)"
    )


def _internal_error(execution_id: str, message: str) -> Outcome:
    return Outcome(
        verdict=Verdict.INTERNAL_ERROR, stderr=message.encode(), execution_id=execution_id
    )
