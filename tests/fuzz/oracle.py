"""What the daemon must answer to a well-formed ExecuteRequest, computed the daemon's way
(convert_server.py, then the engine's validation.py, with the same PoolConfig bounds as
`sandboxd serve --max-message-bytes`), so that a fuzz test checks the exact status and the
exact field of every INVALID_ARGUMENT rather than "some documented status"."""

from __future__ import annotations

from dataclasses import dataclass

from sandboxd import convert_server as convert
from sandboxd.server import ENVELOPE_BYTES
from sandboxd.status_server import MAX_FIELD_BYTES, bounded
from sandboxd.tenants import Tenant
from sandboxd_client._proto import sandbox_pb2 as pb
from sandboxd_pool import InvalidRequest, PoolConfig
from sandboxd_pool.validation import validate

from .conftest import MAX_MESSAGE_BYTES

CONFIG = PoolConfig(
    max_stdin_bytes=MAX_MESSAGE_BYTES,
    max_files_bytes=MAX_MESSAGE_BYTES,
    max_code_bytes=MAX_MESSAGE_BYTES,
)


@dataclass(frozen=True)
class Expected:
    status: str  # "OK", "INVALID_ARGUMENT", "PERMISSION_DENIED", "TOO_LARGE"
    field: str = ""


def expected(msg: pb.ExecuteRequest, tenant: Tenant, *, submit: bool = False) -> Expected:
    if msg.ByteSize() > MAX_MESSAGE_BYTES + ENVELOPE_BYTES:
        return Expected("TOO_LARGE")
    try:
        runtime = convert.runtime_of(msg)
        if runtime not in tenant.runtimes:
            return Expected("PERMISSION_DENIED")
        validate(convert.execution_request(msg, tenant, submit=submit), CONFIG)
    except InvalidRequest as e:
        return Expected("INVALID_ARGUMENT", bounded(e.field, MAX_FIELD_BYTES))
    return Expected("OK")


MAPS = ("env", "labels")


def same_field(got: str, want: str) -> bool:
    """`got` is the violation `want` names. Within a map (env, labels) any bad entry will do:
    protobuf maps have no order, so which bad entry is checked first differs by process."""
    if got == want:
        return True
    return any(got.startswith(f"{m}[") and want.startswith(f"{m}[") for m in MAPS)
