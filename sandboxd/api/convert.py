"""Protobuf messages <-> engine types, on the daemon's side of the wire (no protobuf enters
sandboxd_pool). Bad fields raise sandboxd_pool.InvalidRequest naming the proto field."""

from __future__ import annotations

from collections.abc import Sequence

from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_pool import ExecutionRequest, InvalidRequest, Limits, Outcome, Runtime, Verdict
from sandboxd_pool.egress import EgressPolicy, EgressRule
from sandboxd_pool.types import EgressEntry, Mode, OutputFile, Started

from ..errors import NotFound
from ..jobs.contract import MAX_IDEMPOTENCY_KEY_BYTES, Job, JobState, is_execution_id
from ..tenants.model import Tenant

MAX_LABELS = 64
MAX_LABEL_KEY_BYTES = 128
MAX_LABEL_VALUE_BYTES = 1024
MAX_EGRESS_ENTRIES = 64

_RUNTIME = {pb.RUNTIME_PYTHON: Runtime.PYTHON, pb.RUNTIME_JAVASCRIPT: Runtime.JAVASCRIPT}
_MODE = {
    pb.MODE_UNSPECIFIED: Mode.SCRIPT,
    pb.MODE_SCRIPT: Mode.SCRIPT,
    pb.MODE_HANDLER: Mode.HANDLER,
}
_VERDICT = {v: getattr(pb, f"VERDICT_{v.name}") for v in Verdict}
_STATE = {s: getattr(pb, f"EXECUTION_STATE_{s.name}") for s in JobState}


def runtime_of(msg: pb.ExecuteRequest) -> Runtime:
    runtime = _RUNTIME.get(msg.runtime)
    if runtime is None:
        raise InvalidRequest(
            "runtime",
            "required: RUNTIME_PYTHON or RUNTIME_JAVASCRIPT"
            if msg.runtime == pb.RUNTIME_UNSPECIFIED
            else f"unknown runtime value {msg.runtime}",
        )
    return runtime


def limits_of(msg: pb.Limits) -> Limits:
    return Limits(
        wall_time_ms=msg.wall_time_ms,
        cpu_time_ms=msg.cpu_time_ms,
        memory_bytes=msg.memory_bytes,
        max_output_bytes=msg.max_output_bytes,
        max_processes=msg.max_processes,
        tmpfs_bytes=msg.tmpfs_bytes,
        max_output_files=msg.max_output_files,
        max_output_files_bytes=msg.max_output_files_bytes,
        max_egress_connections=msg.max_egress_connections,
        max_egress_sent_bytes=msg.max_egress_sent_bytes,
        max_egress_received_bytes=msg.max_egress_received_bytes,
    )


def requested_egress(msg: pb.ExecuteRequest, tenant: Tenant) -> tuple[str, ...]:
    """The request's own egress list, checked against the tenant's rules (INVALID_ARGUMENT
    naming the entry); () for all the tenant's rules."""
    wanted = tuple(msg.egress)
    if not wanted:
        return ()
    if len(wanted) > MAX_EGRESS_ENTRIES:
        raise InvalidRequest("egress", f"more than {MAX_EGRESS_ENTRIES} entries")
    if tenant.egress is None:
        raise InvalidRequest(
            "egress", f"tenant {tenant.name!r} has no egress rules: nothing can be reached"
        )
    for i, entry in enumerate(wanted):
        try:
            tenant.egress.narrowed([entry])
        except ValueError as e:
            raise InvalidRequest(f"egress[{i}]", str(e)) from None
    return wanted


def egress_policy(tenant: Tenant | None, requested: Sequence[str]) -> EgressPolicy | None:
    """What an execution of `tenant` may reach: its rules, narrowed to `requested` when the
    request named destinations. A destination no longer within the rules (the tenants file
    was reloaded since an async job was admitted) is dropped; None: no egress at all."""
    if tenant is None or tenant.egress is None:
        return None
    if not requested:
        return tenant.egress
    kept = []
    for entry in requested:
        rule = EgressRule.parse(entry)
        if any(r.covers(rule) for r in tenant.egress.rules):
            kept.append(rule)
    return EgressPolicy(
        rules=tuple(kept),
        private_ranges=tenant.egress.private_ranges,
        headers=tenant.egress.headers,
    )


def labels_of(msg: pb.ExecuteRequest) -> dict[str, str]:
    if len(msg.labels) > MAX_LABELS:
        raise InvalidRequest("labels", f"more than {MAX_LABELS} labels")
    for key, value in msg.labels.items():
        if not key or len(key.encode()) > MAX_LABEL_KEY_BYTES:
            raise InvalidRequest(f"labels[{key!r}]", f"a key must be 1-{MAX_LABEL_KEY_BYTES} bytes")
        if len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            raise InvalidRequest(
                f"labels[{key!r}]", f"a value is at most {MAX_LABEL_VALUE_BYTES} bytes"
            )
    return dict(msg.labels)


def execution_request(msg: pb.ExecuteRequest, tenant: str, *, submit: bool) -> ExecutionRequest:
    """The engine request for `msg` on behalf of `tenant`, with the limits it asks for (the
    tenant's defaults and ceilings are applied next: admission.py). `submit`: for Submit,
    where an idempotency key is allowed."""
    runtime = runtime_of(msg)
    mode = _MODE.get(msg.mode)
    if mode is None:
        raise InvalidRequest("mode", f"unknown mode value {msg.mode}")
    if msg.idempotency_key and not submit:
        raise InvalidRequest("idempotency_key", "is for Submit only; Execute never runs twice")
    if len(msg.idempotency_key.encode()) > MAX_IDEMPOTENCY_KEY_BYTES:
        raise InvalidRequest(
            "idempotency_key", f"at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes (UTF-8)"
        )
    files: dict[str, bytes] = {}
    for i, f in enumerate(msg.files):
        if f.path in files:
            raise InvalidRequest(f"files[{i}].path", f"duplicate path {f.path!r}")
        files[f.path] = f.content
    labels_of(msg)
    return ExecutionRequest(
        runtime=runtime,
        code=msg.code,
        stdin=msg.stdin,
        args=tuple(msg.args),
        env=dict(msg.env),
        files=files,
        limits=limits_of(msg.limits),
        tenant=tenant,
        mode=mode,
        event=msg.event,
        environment=msg.environment,
    )


def response(outcome: Outcome, *, with_output: bool = True) -> pb.ExecuteResponse:
    """`with_output` False: the final ExecuteStream response, whose output and files went
    out as events before it."""
    msg = pb.ExecuteResponse(
        execution_id=outcome.execution_id,
        verdict=_VERDICT[outcome.verdict],
        stdout=outcome.stdout if with_output else b"",
        stderr=outcome.stderr if with_output else b"",
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        result=outcome.result,
        blocked_syscall=outcome.blocked_syscall or "",
        usage=pb.Usage(
            wall_time_us=outcome.usage.wall_time_us,
            cpu_time_us=outcome.usage.cpu_time_us,
            peak_memory_bytes=outcome.usage.peak_memory_bytes,
        ),
        queue_wait_us=outcome.queue_wait_us,
        cold_start=outcome.cold_start,
        worker_boot_us=outcome.worker_boot_us,
        egress=[egress_entry(e) for e in outcome.egress],
        files=[file_message(f) for f in outcome.files] if with_output else [],
        files_truncated=outcome.files_truncated,
    )
    if outcome.exit_code is not None:
        msg.exit_code = outcome.exit_code
    if outcome.signal is not None:
        msg.signal = outcome.signal
    return msg


def egress_entry(entry: EgressEntry) -> pb.EgressEntry:
    return pb.EgressEntry(
        host=entry.host,
        port=entry.port,
        allowed=entry.allowed,
        connections=entry.connections,
        sent_bytes=entry.sent_bytes,
        received_bytes=entry.received_bytes,
        reason=entry.reason,
    )


def file_message(file: OutputFile) -> pb.File:
    return pb.File(path=file.path, content=file.data)


def file_event(file: OutputFile) -> pb.ExecuteEvent:
    return pb.ExecuteEvent(file=file_message(file))


def started_event(started: Started) -> pb.ExecuteEvent:
    return pb.ExecuteEvent(
        started=pb.ExecutionStarted(
            execution_id=started.execution_id,
            queue_wait_us=started.queue_wait_us,
            cold_start=started.cold_start,
        )
    )


def execution_id_of(msg: pb.GetExecutionRequest | pb.CancelExecutionRequest) -> str:
    """The id, checked to be one the daemon issues before any store sees it (with Redis it
    becomes part of key names): anything else is NOT_FOUND, like an unknown id."""
    if not msg.execution_id:
        raise InvalidRequest("execution_id", "required: the id returned by Submit")
    if not is_execution_id(msg.execution_id):
        raise NotFound(
            f"execution {msg.execution_id!r} not found: not an id this service issues "
            "(32 lowercase hex digits)"
        )
    return msg.execution_id


def execution(job: Job) -> pb.Execution:
    msg = pb.Execution(execution_id=job.execution_id, state=_STATE[job.state])
    if job.outcome is not None:
        msg.response.CopyFrom(response(job.outcome))
    return msg
