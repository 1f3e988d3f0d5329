"""The embedded backend's bookkeeping: job records, idempotency keys, retention, memory budget.

Pure logic with an injected clock and no threads or locks: `EmbeddedJobs` calls it under its
own lock. Everything is in memory, so results are lost when the daemon stops.

Memory is bounded by `StoreLimits.max_bytes`, counted per record as
  - while queued or running: the request's payload (code, stdin, files, event, args, env,
    labels) plus the worst-case output (stdout, stderr and result, each up to the job's
    `max_output_bytes`; the files of its out/ folder, up to `max_output_files_bytes` plus
    OUTPUT_FILE_PATH_BYTES for each of `max_output_files`), so a job accepted always has
    room for its result;
  - once finished: its actual stdout + stderr + result + files (paths and contents);
  - always: RECORD_OVERHEAD_BYTES for the record itself.
A Submit that would go over the budget, or over `max_queued_jobs` jobs waiting to start, is
refused with QuotaExceeded (RESOURCE_EXHAUSTED + RetryInfo); nothing already accepted is
evicted early. Each tenant has its own share, from its JobSpec, checked first: at most
`spec.max_queued_jobs` of its jobs accepted and not finished, and at most
`spec.max_async_bytes` counted for its records, so one tenant cannot fill the node's queue or
memory for the others. A finished job is kept `retention_s` after it finished, then forgotten
(NOT_FOUND, and its idempotency key is free again); queued and running jobs never expire."""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sandboxd_pool import Outcome

from ..errors import NotFound, QuotaExceeded
from .contract import JobSpec, JobState

RECORD_OVERHEAD_BYTES = 1024
OUTPUT_FILE_PATH_BYTES = 256  # reserved per output file for its path (the actual one counts after)
MIN_RETRY_S = 1.0
MAX_RETRY_S = 60.0


@dataclass(frozen=True)
class StoreLimits:
    retention_s: float = 3600.0  # a finished job's result is kept this long after it finished
    max_queued_jobs: int = 1000  # jobs waiting to start on this node (running ones not counted)
    max_bytes: int = 1024 * 1024 * 1024  # memory budget of all records (see the module doc)


@dataclass
class JobRecord:
    """One execution's mutable record; only the store and its owner's lock touch it."""

    execution_id: str
    tenant: str
    idempotency_key: str
    state: JobState
    submitted_at_s: float  # clock time of the Submit
    size_bytes: int  # what this record counts against StoreLimits.max_bytes
    spec: JobSpec | None  # the request; dropped once finished
    outcome: Outcome | None = None  # set when DONE
    expires_at_s: float | None = None  # set when finished


def request_bytes(spec: JobSpec) -> int:
    r = spec.request
    return (
        len(r.code.encode())
        + len(r.stdin)
        + len(r.event)
        + sum(len(path.encode()) + len(content) for path, content in r.files.items())
        + sum(len(a.encode()) for a in r.args)
        + sum(len(k.encode()) + len(v.encode()) for k, v in r.env.items())
        + sum(len(k.encode()) + len(v.encode()) for k, v in spec.labels.items())
    )


def reserved_bytes(spec: JobSpec) -> int:
    """What an unfinished job counts: its request plus room for its largest possible result
    (stdout, stderr and a HANDLER result; the files of its out/ folder, with
    OUTPUT_FILE_PATH_BYTES per file for its path)."""
    limits = spec.request.limits
    files = limits.max_output_files_bytes + limits.max_output_files * OUTPUT_FILE_PATH_BYTES
    return RECORD_OVERHEAD_BYTES + request_bytes(spec) + 3 * limits.max_output_bytes + files


def result_bytes(outcome: Outcome | None) -> int:
    if outcome is None:
        return RECORD_OVERHEAD_BYTES
    files = sum(len(f.path.encode()) + len(f.data) for f in outcome.files)
    return (
        RECORD_OVERHEAD_BYTES
        + len(outcome.stdout)
        + len(outcome.stderr)
        + len(outcome.result)
        + files
    )


class JobStore:
    def __init__(
        self,
        limits: StoreLimits,
        clock: Callable[[], float] = time.monotonic,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._new_id = new_id
        self._records: dict[str, JobRecord] = {}
        self._by_key: dict[tuple[str, str], str] = {}  # (tenant, idempotency key) -> id
        self._expiry: list[tuple[float, str]] = []  # heap of (expires_at_s, execution_id)
        self._queued = 0
        self.used_bytes = 0
        self._tenant_unfinished: dict[str, int] = {}
        self._tenant_bytes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._records)

    @property
    def queued(self) -> int:
        """Jobs in state QUEUED."""
        return self._queued

    def now(self) -> float:
        return self._clock()

    def tenant_unfinished(self, tenant: str) -> int:
        return self._tenant_unfinished.get(tenant, 0)

    def tenant_bytes(self, tenant: str) -> int:
        return self._tenant_bytes.get(tenant, 0)

    def add(self, spec: JobSpec) -> tuple[JobRecord, bool]:
        """A new QUEUED record, or (created False) the kept record of the same tenant's same
        idempotency key. QuotaExceeded when the queue or the memory budget is full."""
        self.purge()
        key = (spec.tenant, spec.idempotency_key)
        if spec.idempotency_key and key in self._by_key:
            return self._records[self._by_key[key]], False
        unfinished = self.tenant_unfinished(spec.tenant)
        if unfinished >= spec.max_queued_jobs:
            raise QuotaExceeded(
                f"tenant:{spec.tenant}:async_queued_jobs",
                f"tenant {spec.tenant!r} already has {unfinished} asynchronous executions "
                f"accepted and not finished on this node, its limit (max_queued_jobs) is "
                f"{spec.max_queued_jobs}",
                MIN_RETRY_S,
            )
        size = reserved_bytes(spec)
        tenant_bytes = self.tenant_bytes(spec.tenant)
        if tenant_bytes + size > spec.max_async_bytes:
            raise QuotaExceeded(
                f"tenant:{spec.tenant}:async_bytes",
                f"tenant {spec.tenant!r} has no room for this asynchronous execution: it needs "
                f"{size} bytes (its request plus room for 3 x max_output_bytes of output and its output files), "
                f"{max(0, spec.max_async_bytes - tenant_bytes)} of the tenant's "
                f"{spec.max_async_bytes} (max_async_bytes) are free",
                self._retry_after_s(),
            )
        if self._queued >= self.limits.max_queued_jobs:
            raise QuotaExceeded(
                "node:async_queued_jobs",
                f"this node already has {self._queued} asynchronous executions waiting to "
                f"start, its limit (--max-queued-jobs) is {self.limits.max_queued_jobs}",
                MIN_RETRY_S,
            )
        if self.used_bytes + size > self.limits.max_bytes:
            raise QuotaExceeded(
                "node:async_store_bytes",
                f"this node's memory for asynchronous executions is full: this one needs "
                f"{size} bytes (its request plus room for 3 x max_output_bytes of output and its output files), "
                f"{self.limits.max_bytes - self.used_bytes} of --async-max-bytes "
                f"{self.limits.max_bytes} are free",
                self._retry_after_s(),
            )
        record = JobRecord(
            execution_id=self._new_id(),
            tenant=spec.tenant,
            idempotency_key=spec.idempotency_key,
            state=JobState.QUEUED,
            submitted_at_s=self._clock(),
            size_bytes=size,
            spec=spec,
        )
        self._records[record.execution_id] = record
        if spec.idempotency_key:
            self._by_key[key] = record.execution_id
        self._queued += 1
        self._tenant_unfinished[spec.tenant] = unfinished + 1
        self._add_bytes(spec.tenant, size)
        return record, True

    def get(self, tenant: str, execution_id: str) -> JobRecord:
        """The tenant's record; NotFound if unknown, expired or another tenant's."""
        self.purge()
        record = self._records.get(execution_id)
        if record is None or record.tenant != tenant:
            raise NotFound(
                f"execution {execution_id!r} not found: unknown, another tenant's, or its "
                f"result expired ({self.limits.retention_s:g} s after it finished)"
            )
        return record

    def unfinished(self) -> list[JobRecord]:
        return [r for r in self._records.values() if not r.state.finished]

    def mark_running(self, record: JobRecord) -> None:
        if record.state is JobState.QUEUED:
            record.state = JobState.RUNNING
            self._queued -= 1

    def finish(self, record: JobRecord, state: JobState, outcome: Outcome | None = None) -> None:
        """DONE (with its outcome) or CANCELLED; the retention starts now."""
        assert state.finished and (outcome is not None) == (state is JobState.DONE)
        if record.state.finished:
            return
        if record.state is JobState.QUEUED:
            self._queued -= 1
        record.state = state
        record.outcome = outcome
        record.spec = None
        left = self._tenant_unfinished[record.tenant] - 1
        if left:
            self._tenant_unfinished[record.tenant] = left
        else:
            del self._tenant_unfinished[record.tenant]
        new_size = result_bytes(outcome)
        self._add_bytes(record.tenant, new_size - record.size_bytes)
        record.size_bytes = new_size
        record.expires_at_s = self._clock() + self.limits.retention_s
        heapq.heappush(self._expiry, (record.expires_at_s, record.execution_id))

    def purge(self) -> int:
        """Forget the records whose retention has passed; how many."""
        now = self._clock()
        removed = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, execution_id = heapq.heappop(self._expiry)
            record = self._records.pop(execution_id, None)
            if record is None:
                continue
            if record.idempotency_key:
                self._by_key.pop((record.tenant, record.idempotency_key), None)
            self._add_bytes(record.tenant, -record.size_bytes)
            removed += 1
        return removed

    def _add_bytes(self, tenant: str, delta: int) -> None:
        self.used_bytes += delta
        left = self._tenant_bytes.get(tenant, 0) + delta
        if left:
            self._tenant_bytes[tenant] = left
        else:
            self._tenant_bytes.pop(tenant, None)

    def _retry_after_s(self) -> float:
        """When memory is likely to be freed: the next expiry, within [1, 60] s."""
        if not self._expiry:
            return MIN_RETRY_S
        return min(MAX_RETRY_S, max(MIN_RETRY_S, self._expiry[0][0] - self._clock()))
