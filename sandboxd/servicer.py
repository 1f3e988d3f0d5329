"""The `sandboxd.v1.Sandbox` servicer: authenticate, admit, run on the engine, answer.

Runs in the gRPC server's threads. Each call: tenant from the key (auth.py), request converted
and limits clamped to the tenant's ceilings (convert_server.py), a tenant concurrency slot
(quotas.py), then the engine. A client that cancels or whose deadline passes has its worker
killed (the call's termination callback sets the engine's cancel event). Errors leave through
status_server.py."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc

from sandboxd_client._proto import sandbox_pb2 as pb
from sandboxd_client._proto import sandbox_pb2_grpc as pb_grpc
from sandboxd_pool import ExecutionRequest, Outcome
from sandboxd_pool.types import Started, Stream

from . import convert_server as convert
from .auth import Authenticator
from .errors import PermissionDenied, QuotaExceeded, Unavailable, Unimplemented
from .metrics import Metrics
from .quotas import ConcurrencyQuota
from .status_server import translate_errors
from .tenants import Tenant

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
    ) -> Outcome: ...


_DONE = object()


class SandboxServicer(pb_grpc.SandboxServicer):
    def __init__(
        self, engine: Engine, auth: Authenticator, quotas: ConcurrencyQuota, metrics: Metrics
    ) -> None:
        self._engine = engine
        self._auth = auth
        self._quotas = quotas
        self._metrics = metrics
        self._draining = threading.Event()

    def start_draining(self) -> None:
        self._draining.set()

    # -- RPCs ----------------------------------------------------------------------------------

    def Execute(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteResponse:
        with self._errors(context):
            tenant, req = self._admit(request, context)
            cancel = _cancel_on_termination(context)
            with self._quotas.slot(tenant.name, tenant.max_concurrent_executions):
                outcome = self._run(tenant, req, request, cancel)
            return convert.response(outcome)
        raise AssertionError("unreachable: _errors aborts")

    def ExecuteStream(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExecuteEvent]:
        with self._errors(context):
            tenant, req = self._admit(request, context)
            cancel = _cancel_on_termination(context)
            events: queue.Queue[Any] = queue.Queue()

            def on_output(stream: Stream, data: bytes) -> None:
                if stream is Stream.STDOUT:
                    events.put(pb.ExecuteEvent(stdout=data))
                else:
                    events.put(pb.ExecuteEvent(stderr=data))

            def run() -> None:
                try:
                    outcome = self._run(
                        tenant,
                        req,
                        request,
                        cancel,
                        on_start=lambda s: events.put(convert.started_event(s)),
                        on_output=on_output,
                    )
                    events.put((_DONE, outcome))
                except BaseException as e:
                    events.put((_DONE, e))

            with self._quotas.slot(tenant.name, tenant.max_concurrent_executions):
                runner = threading.Thread(target=run, name="sandboxd-stream", daemon=True)
                runner.start()
                try:
                    while True:
                        item = events.get()
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
            self._auth.tenant(context.invocation_metadata())
            raise Unimplemented(_ASYNC_UNIMPLEMENTED)
        raise AssertionError("unreachable")

    def GetExecution(
        self, request: pb.GetExecutionRequest, context: grpc.ServicerContext
    ) -> pb.Execution:
        with self._errors(context):
            self._auth.tenant(context.invocation_metadata())
            raise Unimplemented(_ASYNC_UNIMPLEMENTED)
        raise AssertionError("unreachable")

    def CancelExecution(
        self, request: pb.CancelExecutionRequest, context: grpc.ServicerContext
    ) -> pb.CancelExecutionResponse:
        with self._errors(context):
            self._auth.tenant(context.invocation_metadata())
            raise Unimplemented(_ASYNC_UNIMPLEMENTED)
        raise AssertionError("unreachable")

    # -- steps ---------------------------------------------------------------------------------

    def _admit(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> tuple[Tenant, ExecutionRequest]:
        if self._draining.is_set():
            raise Unavailable("the node is draining (shutting down); retry on another node")
        tenant = self._auth.tenant(context.invocation_metadata())
        runtime = convert.runtime_of(request)
        if runtime not in tenant.runtimes:
            raise PermissionDenied(
                f"tenant {tenant.name!r} may not use runtime {runtime.value} "
                f"(allowed: {', '.join(sorted(r.value for r in tenant.runtimes)) or 'none'})"
            )
        return tenant, convert.execution_request(request, tenant)

    def _run(
        self,
        tenant: Tenant,
        req: ExecutionRequest,
        msg: pb.ExecuteRequest,
        cancel: threading.Event,
        on_start: Callable[[Started], None] | None = None,
        on_output: Callable[[Stream, bytes], None] | None = None,
    ) -> Outcome:
        execution_id = uuid.uuid4().hex
        self._metrics.in_flight.inc()
        try:
            outcome = self._engine.execute(
                req,
                cancel=cancel,
                on_start=on_start,
                on_output=on_output,
                execution_id=execution_id,
            )
        finally:
            self._metrics.in_flight.dec()
        self._metrics.record(req.runtime.value, tenant.name, outcome)
        log.info(
            "execution finished",
            extra={
                "fields": {
                    "execution_id": outcome.execution_id,
                    "tenant": tenant.name,
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
                    "labels": dict(msg.labels),
                }
            },
        )
        return outcome

    def _errors(self, context: grpc.ServicerContext) -> Any:
        return translate_errors(context, on_error=self._count_error)

    def _count_error(self, code: grpc.StatusCode, exc: BaseException) -> None:
        self._metrics.rejections.labels(code.name).inc()
        if isinstance(exc, QuotaExceeded):
            self._metrics.quota_rejections.labels(exc.subject.rsplit(":", 1)[-1]).inc()


_ASYNC_UNIMPLEMENTED = (
    "asynchronous executions (Submit, GetExecution, CancelExecution) are not available on "
    "this server yet; use Execute or ExecuteStream"
)


def _cancel_on_termination(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the call ends for any reason (client cancel, deadline, done)."""
    cancel = threading.Event()
    if not context.add_callback(cancel.set):
        cancel.set()  # already terminated
    return cancel
