"""The `sandboxd.v1.Sandbox` servicer: authenticate, admit, run on the engine, answer.

Runs in the gRPC server's threads, for calls call_guard.py admitted (key checked, open calls
counted). Each call: tenant from the key (sandboxd.tenants.auth), the runtime allowed, the tenant's rate
and CPU quotas and (Execute, ExecuteStream) a concurrency slot (sandboxd.quotas), and only
then the work that grows with the request: converted, limits clamped to the tenant's
ceilings (convert.py), validated, run on the engine. A client that cancels or whose
deadline passes has its worker killed (the call's termination callback sets the engine's
cancel event). Errors leave through status.py.

Submit / GetExecution / CancelExecution admit a request the same way, then hand it to the
async backend (sandboxd.jobs.contract; the embedded one is sandboxd.jobs.embedded), which runs it through
`run_job` below: the same engine call, metrics and logs as Execute."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, Protocol

import grpc

from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc
from sandboxd_pool import ExecutionRequest, Outcome
from sandboxd_pool.egress import EgressPolicy
from sandboxd_pool.types import Started, Stream

from ..errors import PermissionDenied, QuotaExceeded, Unavailable, Unimplemented
from ..jobs.contract import MAX_WAIT_MS, JobBackend, JobSpec, RunJob, TenantJobLimits
from ..metrics import Metrics
from ..quotas.protocol import Quotas
from ..tenants.auth import Authenticator
from ..tenants.model import Tenant
from . import convert
from .status import translate_errors

log = logging.getLogger("sandboxd.executions")


class Engine(Protocol):
    """What the servicer needs from the pool (sandboxd_pool.Pool, or a bench baseline)."""

    def execute(
        self,
        request: ExecutionRequest,
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
    def __init__(
        self,
        engine: Engine,
        auth: Authenticator,
        quotas: Quotas,
        metrics: Metrics,
        *,
        jobs: Callable[[RunJob], JobBackend] | None = None,
        validate: Callable[[ExecutionRequest], object] | None = None,
        tenant_jobs: TenantJobLimits | None = None,
    ) -> None:
        """jobs: builds the async backend from the function that runs one job (without it
        the async RPCs are UNIMPLEMENTED). validate: the engine's request validation, run at
        Submit so that a bad request is INVALID_ARGUMENT there, not a failed job later.
        tenant_jobs: a tenant's share of the async backend unless its tenants-file entry
        says otherwise."""
        self._engine = engine
        self._auth = auth
        self._quotas = quotas
        self._metrics = metrics
        self._validate = validate
        self._tenant_jobs = tenant_jobs or TenantJobLimits()
        self._draining = threading.Event()
        self.jobs = jobs(self.run_job) if jobs is not None else None

    def start_draining(self) -> None:
        self._draining.set()
        if self.jobs is not None:
            self.jobs.start_draining()

    # -- RPCs ----------------------------------------------------------------------------------

    def Execute(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteResponse:
        with self._errors(context):
            tenant = self._tenant(request, context)
            cancel = _cancel_on_termination(context)
            with self._quotas.slot(tenant.name, tenant.max_concurrent_executions):
                req = convert.execution_request(request, tenant)
                egress = convert.egress_policy(tenant, convert.requested_egress(request, tenant))
                outcome = self._run(tenant.name, req, request.labels, cancel, egress=egress)
            return convert.response(outcome)
        raise AssertionError("unreachable: _errors aborts")

    def ExecuteStream(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExecuteEvent]:
        with self._errors(context):
            tenant = self._tenant(request, context)
            cancel = _cancel_on_termination(context)
            with self._quotas.slot(tenant.name, tenant.max_concurrent_executions):
                req = convert.execution_request(request, tenant)
                egress = convert.egress_policy(tenant, convert.requested_egress(request, tenant))
                backlog = _Backlog()

                def run() -> None:
                    try:
                        outcome = self._run(
                            tenant.name,
                            req,
                            request.labels,
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
                            yield pb.ExecuteEvent(
                                response=convert.response(result, with_output=False)
                            )
                            return
                        yield item
                finally:
                    cancel.set()  # no-op once finished; kills the worker if the client left
                    runner.join()

    def Submit(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> pb.SubmitResponse:
        with self._errors(context):
            jobs = self._jobs(context)
            tenant = self._tenant(request, context)
            req = convert.execution_request(request, tenant, submit=True)
            if self._validate is not None:
                self._validate(req)
            spec = JobSpec(
                tenant=tenant.name,
                max_concurrent_executions=tenant.max_concurrent_executions,
                request=req,
                labels=dict(request.labels),
                idempotency_key=request.idempotency_key,
                max_queued_jobs=tenant.max_queued_jobs or self._tenant_jobs.max_queued_jobs,
                max_async_bytes=tenant.max_async_bytes or self._tenant_jobs.max_async_bytes,
                egress=convert.requested_egress(request, tenant),
            )
            return pb.SubmitResponse(execution_id=jobs.submit(spec))
        raise AssertionError("unreachable")

    def GetExecution(
        self, request: pb.GetExecutionRequest, context: grpc.ServicerContext
    ) -> pb.Execution:
        with self._errors(context):
            jobs = self._jobs(context)
            tenant = self._auth.tenant(context.invocation_metadata())
            execution_id = convert.execution_id_of(request)
            wait_s = _wait_s(min(request.wait_ms, MAX_WAIT_MS) / 1000, context)
            job = jobs.get(tenant.name, execution_id, wait_s, _cancel_on_termination(context))
            return convert.execution(job)
        raise AssertionError("unreachable")

    def CancelExecution(
        self, request: pb.CancelExecutionRequest, context: grpc.ServicerContext
    ) -> pb.CancelExecutionResponse:
        with self._errors(context):
            jobs = self._jobs(context)
            tenant = self._auth.tenant(context.invocation_metadata())
            execution_id = convert.execution_id_of(request)
            wait_s = _wait_s(CANCEL_WAIT_S, context)
            job = jobs.cancel(tenant.name, execution_id, wait_s, _cancel_on_termination(context))
            return pb.CancelExecutionResponse(execution=convert.execution(job))
        raise AssertionError("unreachable")

    def run_job(
        self,
        spec: JobSpec,
        execution_id: str,
        cancel: threading.Event,
        on_start: Callable[[Started], None],
        queued_us: int,
    ) -> Outcome:
        """jobs.RunJob: one async job on the engine, with the metrics and logs of Execute. Its
        egress is the tenant's rules as they are now (narrowed as the request asked)."""
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

    def _tenant(self, request: pb.ExecuteRequest, context: grpc.ServicerContext) -> Tenant:
        """The caller, allowed to run `request`'s runtime, its rate and CPU quotas spent:
        all before any work that grows with the request (conversion, validation)."""
        if self._draining.is_set():
            raise Unavailable("the node is draining (shutting down); retry on another node")
        tenant = self._auth.tenant(context.invocation_metadata())
        runtime = convert.runtime_of(request)
        if runtime not in tenant.runtimes:
            raise PermissionDenied(
                f"tenant {tenant.name!r} may not use runtime {runtime.value} "
                f"(allowed: {', '.join(sorted(r.value for r in tenant.runtimes)) or 'none'})"
            )
        self._quotas.admit(tenant)
        return tenant

    def _run(
        self,
        tenant: str,
        req: ExecutionRequest,
        labels: Mapping[str, str],
        cancel: threading.Event,
        on_start: Callable[[Started], None] | None = None,
        on_output: Callable[[Stream, bytes], None] | None = None,
        execution_id: str | None = None,
        queued_us: int = 0,
        output_paused: Callable[[], bool] | None = None,
        egress: EgressPolicy | None = None,
    ) -> Outcome:
        execution_id = execution_id or uuid.uuid4().hex
        self._metrics.in_flight.inc()
        try:
            outcome = self._engine.execute(
                req,
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
                    "mode": req.mode.value,
                    "verdict": outcome.verdict.value,
                    "exit_code": outcome.exit_code,
                    "signal": outcome.signal,
                    "wall_time_us": outcome.usage.wall_time_us,
                    "cpu_time_us": outcome.usage.cpu_time_us,
                    "peak_memory_bytes": outcome.usage.peak_memory_bytes,
                    "queue_wait_us": outcome.queue_wait_us,
                    "cold_start": outcome.cold_start,
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

    def _errors(self, context: grpc.ServicerContext) -> Any:
        return translate_errors(context, on_error=self.count_error)

    def count_error(self, code: grpc.StatusCode, exc: BaseException) -> None:
        """Metrics of a refused call (also for refusals before the servicer: call_guard.py,
        service.py)."""
        self._metrics.rejections.labels(code.name).inc()
        if isinstance(exc, QuotaExceeded):
            self._metrics.quota_rejections.labels(exc.subject.rsplit(":", 1)[-1]).inc()


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
