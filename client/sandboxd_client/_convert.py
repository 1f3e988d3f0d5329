"""Translation between the public dataclasses and the generated protobuf messages, and from
gRPC errors to the client's exceptions (the one seam where protobuf meets the public API)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import grpc

from . import _status_details, errors
from .proto import sandbox_pb2 as pb
from .types import (
    EgressEntry,
    ExecuteResult,
    Execution,
    ExecutionState,
    Limits,
    Mode,
    Output,
    OutputFile,
    Runtime,
    Started,
    StreamEvent,
    Usage,
    Verdict,
)

_RUNTIME = {Runtime.PYTHON: pb.RUNTIME_PYTHON, Runtime.JAVASCRIPT: pb.RUNTIME_JAVASCRIPT}
_MODE = {Mode.SCRIPT: pb.MODE_SCRIPT, Mode.HANDLER: pb.MODE_HANDLER}
_VERDICT = {getattr(pb, f"VERDICT_{v.name}"): v for v in Verdict}
_STATE = {getattr(pb, f"EXECUTION_STATE_{s.name}"): s for s in ExecutionState}

_ERRORS: dict[grpc.StatusCode, type[errors.SandboxdError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequest,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.QuotaExceeded,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.UNIMPLEMENTED: errors.Unimplemented,
}


def runtime_of(runtime: Runtime | str) -> Runtime:
    if isinstance(runtime, Runtime):
        return runtime
    try:
        return Runtime(runtime.lower())
    except ValueError:
        raise ValueError(f"unknown runtime {runtime!r}: use 'python' or 'javascript'") from None


def request(
    runtime: Runtime | str,
    code: str,
    *,
    stdin: bytes = b"",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    mode: Mode = Mode.SCRIPT,
    event: bytes = b"",
    labels: Mapping[str, str] | None = None,
    idempotency_key: str = "",
    environment: str = "",
    egress: Sequence[str] = (),
) -> pb.ExecuteRequest:
    lim = limits or Limits()
    return pb.ExecuteRequest(
        runtime=_RUNTIME[runtime_of(runtime)],
        code=code,
        stdin=stdin,
        args=list(args),
        env=dict(env or {}),
        files=[pb.File(path=p, content=c) for p, c in (files or {}).items()],
        limits=pb.Limits(
            wall_time_ms=lim.wall_time_ms,
            cpu_time_ms=lim.cpu_time_ms,
            memory_bytes=lim.memory_bytes,
            max_output_bytes=lim.max_output_bytes,
            max_processes=lim.max_processes,
            tmpfs_bytes=lim.tmpfs_bytes,
            max_output_files=lim.max_output_files,
            max_output_files_bytes=lim.max_output_files_bytes,
            max_egress_connections=lim.max_egress_connections,
            max_egress_sent_bytes=lim.max_egress_sent_bytes,
            max_egress_received_bytes=lim.max_egress_received_bytes,
        ),
        mode=_MODE[mode],
        event=event,
        labels=dict(labels or {}),
        idempotency_key=idempotency_key,
        environment=environment,
        egress=list(egress),
    )


def result(msg: pb.ExecuteResponse) -> ExecuteResult:
    return ExecuteResult(
        execution_id=msg.execution_id,
        verdict=_VERDICT.get(msg.verdict, Verdict.INTERNAL_ERROR),
        exit_code=msg.exit_code if msg.HasField("exit_code") else None,
        signal=msg.signal if msg.HasField("signal") else None,
        stdout=msg.stdout,
        stderr=msg.stderr,
        stdout_truncated=msg.stdout_truncated,
        stderr_truncated=msg.stderr_truncated,
        result=msg.result,
        blocked_syscall=msg.blocked_syscall,
        usage=Usage(
            wall_time_us=msg.usage.wall_time_us,
            cpu_time_us=msg.usage.cpu_time_us,
            peak_memory_bytes=msg.usage.peak_memory_bytes,
        ),
        queue_wait_us=msg.queue_wait_us,
        cold_start=msg.cold_start,
        worker_boot_us=msg.worker_boot_us,
        files=tuple(OutputFile(f.path, f.content) for f in msg.files),
        files_truncated=msg.files_truncated,
        egress=tuple(
            EgressEntry(
                host=e.host,
                port=e.port,
                allowed=e.allowed,
                connections=e.connections,
                sent_bytes=e.sent_bytes,
                received_bytes=e.received_bytes,
                reason=e.reason,
            )
            for e in msg.egress
        ),
    )


def execution(msg: pb.Execution) -> Execution:
    state = _STATE.get(msg.state)
    if state is None:
        raise errors.InternalError(f"unknown execution state {msg.state}")
    return Execution(
        execution_id=msg.execution_id,
        state=state,
        result=result(msg.response) if state is ExecutionState.DONE else None,
    )


def event(msg: pb.ExecuteEvent) -> StreamEvent:
    kind = msg.WhichOneof("event")
    if kind == "started":
        s = msg.started
        return Started(s.execution_id, s.queue_wait_us, s.cold_start)
    if kind == "stdout":
        return Output("stdout", msg.stdout)
    if kind == "stderr":
        return Output("stderr", msg.stderr)
    if kind == "file":
        return OutputFile(msg.file.path, msg.file.content)
    if kind == "response":
        return result(msg.response)
    raise errors.InternalError(f"unknown stream event {kind!r}")


def error(
    code: grpc.StatusCode | None,
    message: str,
    trailing: Iterable[tuple[str, str | bytes]] | None,
) -> errors.SandboxdError:
    """The client exception for a failed call."""
    details = _status_details.StatusDetails()
    for key, value in trailing or ():
        if key == _status_details.TRAILER and isinstance(value, bytes):
            details = _status_details.parse(value)
    cls = _ERRORS.get(code or grpc.StatusCode.UNKNOWN, errors.InternalError)
    if cls is errors.InvalidRequest:
        return errors.InvalidRequest(message, tuple(details.field_violations))
    if cls is errors.QuotaExceeded:
        return errors.QuotaExceeded(message, details.retry_delay_s, tuple(details.quota_violations))
    err = cls(message)
    if cls is errors.InternalError and code is not None:
        err.code = code.name
    return err


def rpc_error(e: grpc.RpcError) -> errors.SandboxdError:
    call: grpc.Call = e  # type: ignore[assignment]  # every RpcError raised by a call is a Call
    return error(call.code(), call.details() or "", call.trailing_metadata())
