"""Bytes for what the Redis backend stores: an admitted job (`JobSpec`) and its result
(`Outcome`). No pickle: whoever can write to Redis must not be able to run code in the daemon.

Layout: MAGIC, a 4-byte big-endian header length, a JSON header, then the binary fields one
after the other; the header lists their lengths. Binary fields (code, stdin, event, files,
stdout, stderr, result, output files) are never base64'd: a 64 MiB stdin costs 64 MiB.
Header keys added later (a request's environment, an outcome's files) are optional on
reading, so a record written by an older node still decodes."""

from __future__ import annotations

import json
import struct
from typing import Any

from sandboxd_pool import ExecutionRequest, Limits, Outcome, Runtime, Verdict
from sandboxd_pool.types import EgressEntry, Mode, OutputFile, Usage

from ..jobs.contract import JobSpec

SPEC_MAGIC = b"SBXJ1"
OUTCOME_MAGIC = b"SBXO1"


class CodecError(ValueError):
    pass


def _pack(magic: bytes, header: dict[str, Any], blobs: list[bytes]) -> bytes:
    header = {**header, "blobs": [len(b) for b in blobs]}
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([magic, struct.pack(">I", len(head)), head, *blobs])


def _unpack(magic: bytes, data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    if not data.startswith(magic):
        raise CodecError(f"not a {magic.decode()} record")
    view = memoryview(data)
    at = len(magic)
    (head_len,) = struct.unpack(">I", view[at : at + 4])
    at += 4
    header = json.loads(bytes(view[at : at + head_len]))
    at += head_len
    blobs = []
    for size in header["blobs"]:
        blobs.append(bytes(view[at : at + size]))
        at += size
    if at != len(data):
        raise CodecError(f"{magic.decode()} record has {len(data) - at} trailing bytes")
    return header, blobs


def encode_spec(spec: JobSpec) -> bytes:
    r = spec.request
    paths = list(r.files)
    header = {
        "tenant": spec.tenant,
        "max_concurrent_executions": spec.max_concurrent_executions,
        "labels": dict(spec.labels),
        "idempotency_key": spec.idempotency_key,
        "runtime": r.runtime.value,
        "mode": r.mode.value,
        "args": list(r.args),
        "env": dict(r.env),
        "limits": {name: getattr(r.limits, name) for name in r.limits.__dataclass_fields__},
        "request_tenant": r.tenant,
        "files": paths,
        "egress": list(spec.egress),
        "environment": r.environment,
    }
    blobs = [r.code.encode(), r.stdin, r.event, *(r.files[p] for p in paths)]
    return _pack(SPEC_MAGIC, header, blobs)


def decode_spec(data: bytes) -> JobSpec:
    h, blobs = _unpack(SPEC_MAGIC, data)
    code, stdin, event, *contents = blobs
    request = ExecutionRequest(
        runtime=Runtime(h["runtime"]),
        code=code.decode(),
        stdin=stdin,
        args=tuple(h["args"]),
        env=h["env"],
        files=dict(zip(h["files"], contents, strict=True)),
        limits=Limits(**h["limits"]),
        tenant=h["request_tenant"],
        mode=Mode(h["mode"]),
        event=event,
        environment=h.get("environment", ""),
    )
    return JobSpec(
        tenant=h["tenant"],
        max_concurrent_executions=h["max_concurrent_executions"],
        request=request,
        labels=h["labels"],
        idempotency_key=h["idempotency_key"],
        egress=tuple(h.get("egress", ())),
    )


def encode_outcome(outcome: Outcome) -> bytes:
    header = {
        "verdict": outcome.verdict.value,
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "stdout_truncated": outcome.stdout_truncated,
        "stderr_truncated": outcome.stderr_truncated,
        "blocked_syscall": outcome.blocked_syscall,
        "usage": [
            outcome.usage.wall_time_us,
            outcome.usage.cpu_time_us,
            outcome.usage.peak_memory_bytes,
        ],
        "cold_start": outcome.cold_start,
        "queue_wait_us": outcome.queue_wait_us,
        "worker_boot_us": outcome.worker_boot_us,
        "execution_id": outcome.execution_id,
        "egress": [
            [e.host, e.port, e.allowed, e.connections, e.sent_bytes, e.received_bytes, e.reason]
            for e in outcome.egress
        ],
        "files": [f.path for f in outcome.files],
        "files_truncated": outcome.files_truncated,
    }
    blobs = [outcome.stdout, outcome.stderr, outcome.result, *(f.data for f in outcome.files)]
    return _pack(OUTCOME_MAGIC, header, blobs)


def decode_outcome(data: bytes) -> Outcome:
    h, (stdout, stderr, result, *contents) = _unpack(OUTCOME_MAGIC, data)
    files = tuple(
        OutputFile(path=path, data=content)
        for path, content in zip(h.get("files", []), contents, strict=True)
    )
    wall, cpu, peak = h["usage"]
    return Outcome(
        verdict=Verdict(h["verdict"]),
        exit_code=h["exit_code"],
        signal=h["signal"],
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=h["stdout_truncated"],
        stderr_truncated=h["stderr_truncated"],
        blocked_syscall=h["blocked_syscall"],
        usage=Usage(wall_time_us=wall, cpu_time_us=cpu, peak_memory_bytes=peak),
        cold_start=h["cold_start"],
        queue_wait_us=h["queue_wait_us"],
        worker_boot_us=h["worker_boot_us"],
        execution_id=h["execution_id"],
        result=result,
        egress=tuple(EgressEntry(*fields) for fields in h.get("egress", ())),
        files=files,
        files_truncated=h.get("files_truncated", False),
    )
