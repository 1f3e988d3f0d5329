"""The `sandboxd.v1.Sandbox` servicer: admit, run on the engine, answer.

Runs in the gRPC server's threads, for calls call_guard.py let in (key checked, open calls
counted), through the handler table of service.py (which turns whatever a method raises into
its status, status.py, and counts it). Execute, ExecuteStream and Submit admit a request
through the same steps in the same order (admission.py: authenticate, authorise, convert,
clamp, validate, then spend quota); Execute and ExecuteStream then hold one of the tenant's
concurrency slots while the request runs on the engine. A client that cancels or whose
deadline passes has its worker killed (the call's termination callback sets the engine's
cancel event).

Submit hands the admitted request to the async backend (sandboxd.jobs.contract), which runs it
through `run_job` below: the same engine call, metrics and logs as Execute. GetExecution and
CancelExecution authenticate and ask the backend."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import replace
from typing import Any, Protocol

import grpc

from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc
from sandboxd_pool import CheckedRequest, ExecutionRequest, Outcome
from sandboxd_pool.egress import EgressPolicy
from sandboxd_pool.types import Started, Stream

from ..errors import Unimplemented
from ..jobs.contract import MAX_WAIT_MS, JobBackend, JobSpec, RunJob, TenantJobLimits
from ..metrics import Metrics
from ..quotas.protocol import Quotas
from ..tenants.auth import Authenticator
from . import convert
from .admission import Admission

log = logging.getLogger("sandboxd.executions")


class Engine(Protocol):
    """What the servicer needs from the pool (sandboxd_pool.Pool, or a bench baseline)."""

    def check(self, request: ExecutionRequest) -> CheckedRequest: ...

    def execute(
        self,
        request: ExecutionRequest | CheckedRequest,
        *,
        cancel: threading.Event | None = None,
        on_start: Callable[[Started], None] | None = None,
        on_output: Callable[[Stream, bytes], None] | None = None,
        execution_id: str | None = None,
        output_paused: Callable[[], bool] | None = None,
        egress: EgressPolicy | None = None,
    ) -> Outcome: ...


_DONE = object()
# ExecuteStream: output waiting for a client that is behind, per stream. Past it the engine
# stops reading the program's pipes (the program blocks on its next write, its wall and CPU
# limits still running) until the client has taken the backlog.
STREAM_BUFFER_BYTES = 1024 * 1024
DEADLINE_MARGIN_S = 0.1  # a long-poll answers this long before the call's deadline
CANCEL_WAIT_S = 5.0  # CancelExecution waits this long for a running job's kill to finish


class SandboxServicer(pb_grpc.SandboxServicer):
    """The RPCs. Each raises what it refuses (sandboxd.errors, sandboxd_pool's InvalidRequest):
    service.py's handler table translates and counts it, once for all of them."""

    def __init__(
        self,
        engine: Engine,
        auth: Authenticator,
        quotas: Quotas,
        metrics: Metrics,
        *,
        jobs: Callable[[RunJob], JobBackend] | None = None,
        tenant_jobs: TenantJobLimits | None = None,
        environments: Collection[str] = (),
    ) -> None:
        """jobs: builds the async backend from the function that runs one job (without it
        the async RPCs are UNIMPLEMENTED). tenant_jobs: a tenant's share of the async backend
        unless its tenants-file entry says otherwise. environments: the names of the engine's
        environments (PoolConfig.environments)."""
        self._engine = engine
        self._auth = auth
        self._quotas = quotas
        self._metrics = metrics
        self._tenant_jobs = tenant_jobs or TenantJobLimits()
        self._draining = threading.Event()
        self._admission = Admission(auth, quotas, engine.check, self._draining, environments)
        self.jobs = jobs(self.run_job) if jobs is not None else None

    def start_draining(self) -> None:
        self._draining.set()
        if self.jobs is not None:
            self.jobs.start_draining()

    # -- RPCs ----------------------------------------------------------------------------------

    def Execute(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteResponse:
        admitted = self._admission.admit(request, context.invocation_metadata(), submit=False)
        tenant = admitted.tenant
        cancel = _cancel_on_termination(context)
        with self._quotas.slot(tenant.name, tenant.max_concurrent_executions):
            egress = convert.egress_policy(tenant, admitted.egress)
            outcome = self._run(
                tenant.name, admitted.request, admitted.labels, cancel, egress=egress
            )
        return convert.response(outcome)

    def ExecuteStream(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExecuteEvent]:
        admitted = self._admission.admit(request, context.invocation_metadata(), submit=False)
        tenant = admitted.tenant
        cancel = _cancel_on_termination(context)
        with self._quotas.slot(tenant.name, tenant.max_concurrent_executions):
            egress = convert.egress_policy(tenant, admitted.egress)
            backlog = _Backlog()

            def run() -> None:
                try:
                    outcome = self._run(
                        tenant.name,
                        admitted.request,
                        admitted.labels,
                        cancel,
                        on_start=lambda s: backlog.put(convert.started_event(s)),
                        on_output=backlog.output,
                        output_paused=backlog.full,
                        egress=egress,
                    )
                    backlog.put((_DONE, outcome))
                except BaseException as e:
                    backlog.put((_DONE, e))

            runner = threading.Thread(target=run, name="sandboxd-stream", daemon=True)
            runner.start()
            try:
                while True:
                    item = backlog.get()
                    if isinstance(item, tuple):
                        result = item[1]
                        if isinstance(result, BaseException):
                            raise result
                        for file in result.files:  # before the final response
                            yield convert.file_event(file)
                        yield pb.ExecuteEvent(response=convert.response(result, with_output=False))
                        return
                    yield item
            finally:
                cancel.set()  # no-op once finished; kills the worker if the client left
                runner.join()

    def Submit(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> pb.SubmitResponse:
        jobs = self._jobs(context)
        admitted = self._admission.admit(request, context.invocation_metadata(), submit=True)
        tenant = admitted.tenant
        spec = JobSpec(
            tenant=tenant.name,
            max_concurrent_executions=tenant.max_concurrent_executions,
            request=admitted.request.request,
            labels=admitted.labels,
            idempotency_key=request.idempotency_key,
            max_queued_jobs=tenant.max_queued_jobs or self._tenant_jobs.max_queued_jobs,
            max_async_bytes=tenant.max_async_bytes or self._tenant_jobs.max_async_bytes,
            egress=admitted.egress,
        )
        return pb.SubmitResponse(execution_id=jobs.submit(spec))

    def GetExecution(
        self, request: pb.GetExecutionRequest, context: grpc.ServicerContext
    ) -> pb.Execution:
        jobs = self._jobs(context)
        tenant = self._auth.tenant(context.invocation_metadata())
        execution_id = convert.execution_id_of(request)
        wait_s = _wait_s(min(request.wait_ms, MAX_WAIT_MS) / 1000, context)
        job = jobs.get(tenant.name, execution_id, wait_s, _cancel_on_termination(context))
        return convert.execution(job)

    def CancelExecution(
        self, request: pb.CancelExecutionRequest, context: grpc.ServicerContext
    ) -> pb.CancelExecutionResponse:
        jobs = self._jobs(context)
        tenant = self._auth.tenant(context.invocation_metadata())
        execution_id = convert.execution_id_of(request)
        wait_s = _wait_s(CANCEL_WAIT_S, context)
        job = jobs.cancel(tenant.name, execution_id, wait_s, _cancel_on_termination(context))
        return pb.CancelExecutionResponse(execution=convert.execution(job))

    def run_job(
        self,
        spec: JobSpec,
        execution_id: str,
        cancel: threading.Event,
        on_start: Callable[[Started], None],
        queued_us: int,
    ) -> Outcome:
        """jobs.RunJob: one async job on the engine, with the metrics and logs of Execute.
        The engine checks the request again: with Redis it may run on another node, under
        that node's configuration. Its egress is the tenant's rules as they are now (narrowed
        as the request asked)."""
        return self._run(
            spec.tenant,
            spec.request,
            spec.labels,
            cancel,
            on_start=on_start,
            execution_id=execution_id,
            queued_us=queued_us,
            egress=convert.egress_policy(self._auth.by_name(spec.tenant), spec.egress),
        )

    # -- steps ---------------------------------------------------------------------------------

    def _jobs(self, context: grpc.ServicerContext) -> JobBackend:
        if self.jobs is None:
            self._auth.tenant(context.invocation_metadata())
            raise Unimplemented(_ASYNC_UNIMPLEMENTED)
        return self.jobs

    def _run(
        self,
        tenant: str,
        request: ExecutionRequest | CheckedRequest,
        labels: Mapping[str, str],
        cancel: threading.Event,
        on_start: Callable[[Started], None] | None = None,
        on_output: Callable[[Stream, bytes], None] | None = None,
        execution_id: str | None = None,
        queued_us: int = 0,
        output_paused: Callable[[], bool] | None = None,
        egress: EgressPolicy | None = None,
    ) -> Outcome:
        req = request.request if isinstance(request, CheckedRequest) else request
        execution_id = execution_id or uuid.uuid4().hex
        self._metrics.in_flight.inc()
        try:
            outcome = self._engine.execute(
                request,
                cancel=cancel,
                on_start=on_start,
                on_output=on_output,
                execution_id=execution_id,
                output_paused=output_paused,
                egress=egress,
            )
        finally:
            self._metrics.in_flight.dec()
        self._quotas.charge_cpu(tenant, outcome.usage.cpu_time_us / 1e6)
        if queued_us:
            outcome = replace(outcome, queue_wait_us=outcome.queue_wait_us + queued_us)
        self._metrics.record(req.runtime.value, tenant, outcome)
        log.info(
            "execution finished",
            extra={
                "fields": {
                    "execution_id": outcome.execution_id,
                    "tenant": tenant,
                    "runtime": req.runtime.value,
                    "environment": req.environment,
                    "mode": req.mode.value,
                    "verdict": outcome.verdict.value,
                    "exit_code": outcome.exit_code,
                    "signal": outcome.signal,
                    "wall_time_us": outcome.usage.wall_time_us,
                    "cpu_time_us": outcome.usage.cpu_time_us,
                    "peak_memory_bytes": outcome.usage.peak_memory_bytes,
                    "queue_wait_us": outcome.queue_wait_us,
                    "cold_start": outcome.cold_start,
                    "files": len(outcome.files),
                    "labels": dict(labels),
                    "egress": [
                        {
                            "host": e.host,
                            "port": e.port,
                            "allowed": e.allowed,
                            "connections": e.connections,
                            "sent_bytes": e.sent_bytes,
                            "received_bytes": e.received_bytes,
                            "reason": e.reason,
                        }
                        for e in outcome.egress
                    ],
                }
            },
        )
        return outcome


_ASYNC_UNIMPLEMENTED = (
    "asynchronous executions (Submit, GetExecution, CancelExecution) are not available on "
    "this server yet; use Execute or ExecuteStream"
)


class _Backlog:
    """ExecuteStream's events between the engine's thread and the call's: the output bytes
    queued are counted, and `full` (the engine's `output_paused`) is true while they are
    over STREAM_BUFFER_BYTES, so a client that does not read holds the program, not memory."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[tuple[Any, int]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._bytes = 0

    def put(self, item: Any) -> None:
        self._events.put((item, 0))

    def output(self, stream: Stream, data: bytes) -> None:
        with self._lock:
            self._bytes += len(data)
        if stream is Stream.STDOUT:
            self._events.put((pb.ExecuteEvent(stdout=data), len(data)))
        else:
            self._events.put((pb.ExecuteEvent(stderr=data), len(data)))

    def full(self) -> bool:
        with self._lock:
            return self._bytes > STREAM_BUFFER_BYTES

    def get(self) -> Any:
        item, size = self._events.get()
        if size:
            with self._lock:
                self._bytes -= size
        return item


def _wait_s(wanted_s: float, context: grpc.ServicerContext) -> float:
    """`wanted_s`, cut so that the answer leaves before the call's deadline."""
    return max(0.0, min(wanted_s, context.time_remaining() - DEADLINE_MARGIN_S))


def _cancel_on_termination(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the call ends for any reason (client cancel, deadline, done)."""
    cancel = threading.Event()
    if not context.add_callback(cancel.set):
        cancel.set()  # already terminated
    return cancel
