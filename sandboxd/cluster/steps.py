"""The Redis backend's steps: every read and write of its keys, each one atomic (a Lua script
of scripts/, or one command), with no thread and no state of its own. jobs.py drives them.

Keys (prefix `sandboxd:`):

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
                             reserve: request + 3 x max_output_bytes + files), streamed (of them,
                             entries in the stream), limit (its max_concurrent_executions)
    backlog:TENANT           list: ids of the tenant's jobs not in the stream yet, oldest first
    unfinished               the cluster's jobs accepted and not finished (--max-queued-jobs)
    events                   pub/sub channel: "done:ID" (wakes long-polls on every node),
                             "cancel:ID" (reaches the node running ID)

A call that cannot reach Redis raises RedisDown (link.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from sandboxd_pool import Outcome

from ..errors import NotFound, QuotaExceeded
from ..jobs.contract import Job, JobSpec, JobState
from ..jobs.store import reserved_bytes
from .codec import decode_outcome, encode_outcome, encode_spec
from .link import RedisLink

GROUP = "sandboxd"
UNAVAILABLE = (
    "asynchronous executions cannot be accepted or read until it is back; "
    "synchronous Execute still works"
)


@dataclass(frozen=True)
class Claim:
    """claim.lua's answer for a stream entry: `verdict` "skip" (finished, or taken by
    another attempt), "cancelled" (`state` is what it was) or "run"."""

    verdict: str
    state: str = ""
    payload: bytes = b""
    submitted_ms: int = 0
    now_ms: int = 0
    attempt: int = 0

    @property
    def queued_us(self) -> int:
        return max(0, self.now_ms - self.submitted_ms) * 1000


class JobSteps:
    def __init__(self, link: RedisLink, *, retention_s: float, visibility_s: float) -> None:
        self.link = link
        self.retention_s = retention_s
        self._r = link.client
        self.stream = link.key("jobs")
        self.channel = link.key("events")
        self.retention_ms = max(1, int(retention_s * 1000))
        self.visibility_ms = max(1000, int(visibility_s * 1000))
        self._scripts = {
            "submit": link.script("_finish", "submit"),
            "claim": link.script("claim"),
            "start": link.script("start"),
            "finish": link.script("_finish", "finish"),
            "cancel": link.script("_finish", "cancel"),
            "requeue": link.script("requeue"),
            "consumers_sweep": link.script("consumers_sweep"),
        }

    # -- jobs ------------------------------------------------------------------------------------

    def submit(self, execution_id: str, spec: JobSpec, max_unfinished: int) -> tuple[str, bool]:
        """Accept the job (submit.lua): (its execution id, True), or (the id of the same
        tenant's job with the same idempotency key, False). QuotaExceeded past the tenant's
        share or the cluster's bound."""
        reserved = reserved_bytes(spec)
        code, value = self._call(
            lambda: self._scripts["submit"](
                keys=[self.stream, self.job_key(execution_id), self._idem_key(spec)],
                args=[
                    execution_id,
                    spec.tenant,
                    "1" if spec.idempotency_key else "0",
                    encode_spec(spec),
                    max_unfinished,
                    self.link.prefix,
                    spec.max_queued_jobs,
                    reserved,
                    spec.max_async_bytes,
                    spec.max_concurrent_executions,
                ],
            )
        )
        if int(code) < 0:
            raise _refusal(int(code), int(value), spec, reserved, max_unfinished)
        return text(value), int(code) == 1

    def read(self, tenant: str, execution_id: str) -> Job:
        """The job as GetExecution reports it; NotFound if unknown, another tenant's or its
        result expired."""
        job_key = self.job_key(execution_id)

        def read() -> list[Any]:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.hmget(job_key, "tenant", "state")
                pipe.get(job_key + ":result")
                return pipe.execute()

        (owner, state), result = self._call(read)
        if owner is None or text(owner) != tenant:
            raise self.not_found(execution_id)
        job_state = JobState(text(state))
        outcome = None
        if job_state is JobState.DONE:
            if result is None:
                raise self.not_found(execution_id)
            outcome = decode_outcome(result)
        return Job(execution_id, tenant, job_state, outcome)

    def claim(self, entry: str, execution_id: str, node: str) -> Claim:
        """Check and mark a stream entry this node took (claim.lua)."""
        reply = self._call(
            lambda: self._scripts["claim"](
                keys=[self.stream, self.job_key(execution_id)], args=[GROUP, entry, node]
            )
        )
        verdict = text(reply[0])
        if verdict == "skip":
            return Claim(verdict)
        if verdict == "cancelled":
            return Claim(verdict, state=text(reply[1]))
        _, state, payload, submitted_ms, now_ms, attempt = reply
        return Claim(verdict, text(state), payload, int(submitted_ms), int(now_ms), int(attempt))

    def start(self, execution_id: str, node: str) -> bool:
        """RUNNING on `node` (start.lua); False if it was cancelled meanwhile."""
        return (
            int(
                self._call(
                    lambda: self._scripts["start"](keys=[self.job_key(execution_id)], args=[node])
                )
            )
            == 1
        )

    def finish(
        self, execution_id: str, entry: str, state: JobState, outcome: Outcome | None
    ) -> None:
        """Write the result (finish.lua; only a job's first result is kept), acknowledge the
        entry, publish "done:ID" and let the tenant's backlog feed the stream."""
        blob = encode_outcome(outcome) if outcome is not None else b""
        self._call(
            lambda: self._scripts["finish"](
                keys=[self.stream, self.job_key(execution_id)],
                args=[
                    state.value,
                    blob,
                    self.retention_ms,
                    GROUP,
                    self.channel,
                    execution_id,
                    entry,
                    self.link.prefix,
                ],
            )
        )

    def cancel(self, tenant: str, execution_id: str) -> str:
        """cancel.lua: a job nobody took is CANCELLED at once, else "cancel:ID" is published
        and recorded on the job. Its state before; NotFound as `read`."""
        (state,) = self._call(
            lambda: self._scripts["cancel"](
                keys=[self.stream, self.job_key(execution_id)],
                args=[
                    tenant,
                    GROUP,
                    self.channel,
                    self.retention_ms,
                    execution_id,
                    self.link.prefix,
                ],
            )
        )
        if text(state) == "missing":
            raise self.not_found(execution_id)
        return text(state)

    def requeue(self, entry: str, execution_id: str) -> None:
        """Give back an entry this node took and did not start: another node runs it."""
        self._call(
            lambda: self._scripts["requeue"](
                keys=[self.stream, self.job_key(execution_id)],
                args=[GROUP, entry, execution_id],
            )
        )

    def renew(self, node: str, held: Sequence[tuple[str, str]]) -> list[bool]:
        """Reset the idle time of these (entry, execution id) of `node`, so that no other node
        takes them over; for each, whether a cancel is recorded on its job."""

        def renew() -> list[Any]:
            self._r.xclaim(self.stream, GROUP, node, 0, [entry for entry, _ in held], justid=True)
            with self._r.pipeline(transaction=False) as pipe:
                for _, execution_id in held:
                    pipe.hget(self.job_key(execution_id), "cancel")
                return pipe.execute()

        return [flag is not None and text(flag) == "1" for flag in self._call(renew)]

    # -- the stream and its consumers ------------------------------------------------------------

    def ensure_group(self) -> None:
        try:
            self._call(lambda: self._r.xgroup_create(self.stream, GROUP, id="0", mkstream=True))
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def read_new(self, node: str, count: int, block_ms: int) -> list[tuple[str, str]]:
        """New entries for `node` (XREADGROUP), waiting up to `block_ms` for some (0: not at
        all): (entry, execution id)."""
        block = block_ms if block_ms > 0 else None  # Redis reads BLOCK 0 as forever
        reply = self._call(
            lambda: self._r.xreadgroup(GROUP, node, {self.stream: ">"}, count=count, block=block)
        )
        return [_entry(e) for _stream, entries in reply or () for e in entries]

    def autoclaim(self, node: str, cursor: str, count: int) -> tuple[str, list[tuple[str, str]]]:
        """Entries idle longer than the visibility timeout (their node died), now `node`'s."""
        reply = self._call(
            lambda: self._r.xautoclaim(
                self.stream,
                GROUP,
                node,
                min_idle_time=self.visibility_ms,
                start_id=cursor,
                count=count,
            )
        )
        return text(reply[0]), [_entry(e) for e in reply[1] if e and e[1]]

    def beat(self, node: str, ttl_ms: int) -> None:
        """The node's heartbeat: its consumer is not swept while the key lives."""
        self._call(lambda: self._r.set(self.link.key("node", node), "1", px=ttl_ms))

    def forget_node(self, node: str) -> None:
        self._call(lambda: self._r.delete(self.link.key("node", node)))

    def sweep_consumers(self, min_idle_ms: int, only: str = "") -> list[str]:
        """Remove the group's consumers of nodes that are gone (consumers_sweep.lua): no
        heartbeat, no pending entry, idle at least `min_idle_ms`; `only`: just that one."""
        prefix = self.link.key("node", "")
        return [
            text(name)
            for name in self._call(
                lambda: self._scripts["consumers_sweep"](
                    keys=[self.stream], args=[GROUP, min_idle_ms, only, prefix]
                )
            )
        ]

    # -- helpers ---------------------------------------------------------------------------------

    def job_key(self, execution_id: str) -> str:
        return self.link.key("job", execution_id)

    def not_found(self, execution_id: str) -> NotFound:
        return NotFound(
            f"execution {execution_id!r} not found: unknown, another tenant's, or its "
            f"result expired ({self.retention_s:g} s after it finished)"
        )

    def _idem_key(self, spec: JobSpec) -> str:
        digest = hashlib.sha256(spec.idempotency_key.encode()).hexdigest()
        return self.link.key("idem", spec.tenant, digest)

    def _call(self, fn: Callable[[], Any]) -> Any:
        return self.link.call(fn, UNAVAILABLE)


def text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _entry(raw: Any) -> tuple[str, str]:
    entry_id, fields = raw
    return text(entry_id), text(fields.get(b"id", b""))


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
            f"{reserved} bytes (its request plus room for 3 x max_output_bytes of output and its output files), "
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
