"""What an answer of the daemon may be, and the checks every fuzz example makes on it.

Our servicer's answers (docs/api.md "Errors"): OK with a verdict, or INVALID_ARGUMENT carrying
google.rpc.BadRequest field violations, UNAUTHENTICATED, PERMISSION_DENIED,
RESOURCE_EXHAUSTED carrying QuotaFailure and RetryInfo, NOT_FOUND, UNAVAILABLE. Never
INTERNAL: its message would be "internal error (request id ...)" and the daemon would log
the traceback at ERROR (conftest.py checks the log after every test).

gRPC's own answers, before any handler runs, are allowed only where a test expects them and
are told apart by their messages: RESOURCE_EXHAUSTED "Received message larger than max"
(no details) for a message over --max-message-bytes + 1 MiB; and, for transport-level garbage
from the raw HTTP/2 client, grpc core's INTERNAL (compression flag without an encoding,
unparseable grpc-encoding or grpc-timeout) and grpcio's UNIMPLEMENTED "requires exactly one
request message" (a unary call whose body holds no complete message)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sandboxd_client.proto import sandbox_pb2 as pb

SERVICER_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAVAILABLE,
    }
)
OUR_INTERNAL_MESSAGE = "internal error (request id"
GRPC_TOO_LARGE = "Received message larger than max"
# Verdicts a fuzzed (cheap or syntactically broken) program may end with; never
# INTERNAL_ERROR (the sandbox failing) or UNSPECIFIED.
VERDICTS = frozenset(pb.Verdict.values()) - {pb.VERDICT_UNSPECIFIED, pb.VERDICT_INTERNAL_ERROR}


def details_of(error: grpc.RpcError) -> list[object]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[object] = []
    for detail in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.QuotaFailure,
            error_details_pb2.RetryInfo,
        ):
            message = kind()
            if detail.Unpack(message):
                found.append(message)
    return found


def check_error(
    error: grpc.RpcError,
    *,
    allowed: frozenset[grpc.StatusCode] = SERVICER_ERRORS,
    too_large: bool = False,
) -> grpc.StatusCode:
    """Assert `error` is one of `allowed` with the details its status documents, or gRPC's own
    size check when `too_large` (the request was over the limit); its code."""
    code = error.code()  # type: ignore[attr-defined]
    message = error.details() or ""  # type: ignore[attr-defined]
    assert OUR_INTERNAL_MESSAGE not in message, f"the servicer failed: {message}"
    if too_large:
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and GRPC_TOO_LARGE in message, message
        return code
    assert code in allowed, f"{code.name}: {message}"
    details = details_of(error)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        bad = [d for d in details if isinstance(d, error_details_pb2.BadRequest)]
        assert len(bad) == 1 and bad[0].field_violations, (message, details)
        assert all(v.field and v.description for v in bad[0].field_violations), bad
    elif code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        kinds = {type(d) for d in details}
        assert kinds == {error_details_pb2.QuotaFailure, error_details_pb2.RetryInfo}, message
    else:
        assert not details, (code, details)
    return code


def check_response(response: pb.ExecuteResponse) -> None:
    assert response.verdict in VERDICTS, response
    assert response.execution_id
    if response.verdict == pb.VERDICT_SYSCALL_BLOCKED:
        assert response.blocked_syscall


def violation_field(error: grpc.RpcError) -> str:
    """The field of an INVALID_ARGUMENT's first violation."""
    bad = [d for d in details_of(error) if isinstance(d, error_details_pb2.BadRequest)]
    return str(bad[0].field_violations[0].field)
