"""Asynchronous executions (Submit / GetExecution / CancelExecution): the backend interface.

The servicer admits a request exactly as for Execute (auth, runtime permission, validation,
limits clamped), then hands the backend a `JobSpec`. A backend queues it, runs it through a
`RunJob` (the servicer's: engine + metrics + logs) and keeps the outcome for a retention
time. No protobuf crosses this interface: the servicer converts at its edge.

    JobBackend            embedded.EmbeddedJobs: in-process, this node only, in memory
                          sandboxd.cluster.jobs.RedisJobs: a Redis Stream shared by the nodes (--redis-url)

Errors a backend raises (translated in sandboxd.api.status): `errors.NotFound` for an id that
is unknown, expired or another tenant's (one answer for all three, so ids do not leak across
tenants); `errors.QuotaExceeded` when the node's queue or memory budget is full;
`errors.Unavailable` once draining."""

from __future__ import annotations

import enum
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sandboxd_pool import ExecutionRequest, Outcome, Started

# GetExecution long-polls at most this long, whatever `wait_ms` asks (and at most until the
# call's deadline). The proto documents the same number.
MAX_WAIT_MS = 30_000
MAX_IDEMPOTENCY_KEY_BYTES = 128
DEFAULT_MAX_QUEUED_JOBS_PER_TENANT = 100
DEFAULT_ASYNC_MAX_BYTES_PER_TENANT = 256 * 1024 * 1024
# An execution id is what the daemon issues (uuid4().hex); anything else is NOT_FOUND before
# any store (a Redis key name) is touched.
EXECUTION_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


class JobState(enum.Enum):
    QUEUED = "QUEUED"  # accepted, waiting for a tenant slot or a worker
    RUNNING = "RUNNING"  # a worker took it
    DONE = "DONE"  # finished, whatever the verdict; `Job.outcome` is set
    CANCELLED = "CANCELLED"  # cancelled (or drained) before it started; nothing ran

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.CANCELLED)


@dataclass(frozen=True)
class JobSpec:
    """An admitted request: validated, limits already clamped to the tenant's ceilings."""

    tenant: str
    max_concurrent_executions: int  # the tenant's: jobs of one tenant running at once
    request: ExecutionRequest
    labels: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str = ""  # "" none; else dedupes per tenant while the result is kept
    # The tenant's share of the backend (its tenants-file values, else the daemon's
    # --max-queued-jobs-per-tenant and --async-max-bytes-per-tenant): its jobs accepted and
    # not finished, and the bytes they and its kept results count (store.py).
    max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS_PER_TENANT
    max_async_bytes: int = DEFAULT_ASYNC_MAX_BYTES_PER_TENANT
    # The request's own egress destinations (ExecuteRequest.egress; () all the tenant's). The
    # policy itself (with the tenant's secrets) is made when the job runs, never stored.
    egress: tuple[str, ...] = ()


@dataclass(frozen=True)
class TenantJobLimits:
    """The daemon's defaults for JobSpec.max_queued_jobs and max_async_bytes."""

    max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS_PER_TENANT
    max_async_bytes: int = DEFAULT_ASYNC_MAX_BYTES_PER_TENANT


def is_execution_id(value: str) -> bool:
    return EXECUTION_ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class Job:
    """A snapshot of one execution, as GetExecution reports it."""

    execution_id: str
    tenant: str
    state: JobState
    outcome: Outcome | None = None  # set exactly when state is DONE


class RunJob(Protocol):
    """Runs one job on the engine (blocking) and returns its Outcome.

    `cancel` set: the worker is killed (verdict KILLED), or, before a worker was taken,
    sandboxd_pool.Cancelled is raised. `on_start` is called once a worker took the job.
    `queued_us`: time the job spent in the backend's queue before the call, added to the
    outcome's `queue_wait_us` (and so to sandboxd_queue_wait_seconds)."""

    def __call__(
        self,
        spec: JobSpec,
        execution_id: str,
        cancel: threading.Event,
        on_start: Callable[[Started], None],
        queued_us: int,
    ) -> Outcome: ...


class JobBackend(Protocol):
    def submit(self, spec: JobSpec) -> str:
        """Queue the job; its execution id (an earlier one's for a repeated idempotency key)."""
        ...

    def get(
        self,
        tenant: str,
        execution_id: str,
        wait_s: float = 0.0,
        wake: threading.Event | None = None,
    ) -> Job:
        """The job's state, waiting up to `wait_s` for it to finish (DONE or CANCELLED), or
        until `wake` is set (the servicer's event for "the call ended"). A backend may return
        before `wait_s` with the current state (e.g. too many waiters)."""
        ...

    def cancel(
        self,
        tenant: str,
        execution_id: str,
        wait_s: float = 0.0,
        wake: threading.Event | None = None,
    ) -> Job:
        """Cancel a queued job (CANCELLED, it never runs) or kill a running one (DONE,
        verdict KILLED), waiting up to `wait_s` for that; a finished job is left as is."""
        ...

    def queued(self) -> int:
        """Jobs waiting to start on this node (the sandboxd_async_jobs_queued gauge)."""
        ...

    def start_draining(self) -> None:
        """Refuse new jobs (Unavailable); jobs not started yet become CANCELLED."""
        ...

    def close(self, grace_s: float) -> None:
        """After start_draining: running jobs get `grace_s` to finish, then are killed."""
        ...
