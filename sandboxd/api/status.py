"""The one seam where errors become gRPC status (docs/api.md "Errors"; the table is in errors.py).

`to_status(exc)` builds the status; `translate_errors(context)` wraps a servicer method so that
whatever it raises leaves as the right status with its standard details.

Messages often quote the request (a file path, an env name, an execution id), which may be up
to 128 KiB. A status travels in the trailers, and gRPC clients refuse trailers over 8 KiB
(soft limit; the call then fails with a RESOURCE_EXHAUSTED of the client's own, losing the
real status), so every text of a status is cut to a few hundred bytes here."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sandboxd_pool import errors as pool_errors

from .. import errors

log = logging.getLogger("sandboxd.rpc")

# UTF-8 bytes of each text in a status. grpc-message percent-encodes non-ASCII bytes (x3) and
# the details are base64 (x4/3): at most ~3 KiB of trailers in all.
MAX_MESSAGE_BYTES = 512
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 384
_CUT = "..."


def bounded(text: str, max_bytes: int) -> str:
    """`text` as valid UTF-8 of at most `max_bytes` bytes, ending in '...' when cut."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) > max_bytes:
        data = data[: max_bytes - len(_CUT)] + _CUT.encode()
    return data.decode("utf-8", "ignore")


def _packed(message: object) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)  # type: ignore[arg-type]
    return detail


def to_status(exc: BaseException) -> grpc.Status:
    """The gRPC status for an exception raised while serving a request."""
    code: int
    details: list[any_pb2.Any] = []
    if isinstance(exc, pool_errors.InvalidRequest):
        code, message = code_pb2.INVALID_ARGUMENT, str(exc)
        details.append(
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=bounded(exc.field, MAX_FIELD_BYTES),
                            description=bounded(exc.message, MAX_DESCRIPTION_BYTES),
                        )
                    ]
                )
            )
        )
    elif isinstance(exc, errors.Unauthenticated):
        code, message = code_pb2.UNAUTHENTICATED, str(exc)
    elif isinstance(exc, errors.PermissionDenied):
        code, message = code_pb2.PERMISSION_DENIED, str(exc)
    elif isinstance(exc, errors.QuotaExceeded):
        code, message = code_pb2.RESOURCE_EXHAUSTED, str(exc)
        details.append(
            _packed(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=bounded(exc.subject, MAX_FIELD_BYTES),
                            description=bounded(exc.description, MAX_DESCRIPTION_BYTES),
                        )
                    ]
                )
            )
        )
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(1, round(exc.retry_after_s * 1000)))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    elif isinstance(exc, errors.Unavailable | pool_errors.PoolClosed):
        code, message = code_pb2.UNAVAILABLE, str(exc) or "the node is shutting down"
    elif isinstance(exc, pool_errors.RuntimeUnavailable):
        code, message = code_pb2.UNAVAILABLE, str(exc)
    elif isinstance(exc, pool_errors.Cancelled):
        code, message = code_pb2.CANCELLED, "cancelled by the client"
    elif isinstance(exc, errors.NotFound):
        code, message = code_pb2.NOT_FOUND, str(exc)
    elif isinstance(exc, errors.Unimplemented):
        code, message = code_pb2.UNIMPLEMENTED, str(exc)
    else:
        request_id = uuid.uuid4().hex
        log.error(
            "internal error",
            exc_info=exc,
            extra={"fields": {"request_id": request_id}},
        )
        code, message = code_pb2.INTERNAL, f"internal error (request id {request_id})"
    message = bounded(message, MAX_MESSAGE_BYTES)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))


@contextlib.contextmanager
def translate_errors(
    context: grpc.ServicerContext,
    on_error: Callable[[grpc.StatusCode, BaseException], None] | None = None,
) -> Iterator[None]:
    """Abort the call with the status of whatever the body raises (`on_error` sees it first)."""
    try:
        yield
    except Exception as exc:
        status = to_status(exc)
        if on_error is not None:
            on_error(status.code, exc)
        context.abort_with_status(status)
