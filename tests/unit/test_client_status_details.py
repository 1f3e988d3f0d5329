"""The client decodes google.rpc.Status details by hand (no googleapis dependency): check it
against statuses built with the real googleapis types."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from sandboxd_client import InvalidRequest, NotFound, QuotaExceeded, Unavailable, Unimplemented
from sandboxd_client._convert import error
from sandboxd_client._status_details import TRAILER, parse


def _packed(message: object) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(message)  # type: ignore[arg-type]
    return a


def _status(*details: object) -> bytes:
    return status_pb2.Status(
        code=3, message="m", details=[_packed(d) for d in details]
    ).SerializeToString()


def test_bad_request_field_violations() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="code", description="required"),
            error_details_pb2.BadRequest.FieldViolation(field="files[2].path", description="ü"),
        ]
    )
    got = parse(_status(bad))
    assert [(v.field, v.description) for v in got.field_violations] == [
        ("code", "required"),
        ("files[2].path", "ü"),
    ]


def test_quota_failure_and_retry_info() -> None:
    delay = duration_pb2.Duration(seconds=2, nanos=500_000_000)
    got = parse(
        _status(
            error_details_pb2.QuotaFailure(
                violations=[error_details_pb2.QuotaFailure.Violation(subject="s", description="d")]
            ),
            error_details_pb2.RetryInfo(retry_delay=delay),
            error_details_pb2.DebugInfo(detail="ignored"),
        )
    )
    assert [(v.subject, v.description) for v in got.quota_violations] == [("s", "d")]
    assert got.retry_delay_s == 2.5


def test_malformed_trailer_gives_no_details() -> None:
    assert parse(b"\x1a\xff\xff").field_violations == []
    assert parse(b"").retry_delay_s is None


def test_errors_by_status_code() -> None:
    trailer = _status(
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field="stdin")]
        )
    )
    e = error(grpc.StatusCode.INVALID_ARGUMENT, "stdin: too big", [(TRAILER, trailer)])
    assert isinstance(e, InvalidRequest)
    assert [v.field for v in e.violations] == ["stdin"]
    q = error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "quota",
        [
            (
                TRAILER,
                _status(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=5))),
            )
        ],
    )
    assert isinstance(q, QuotaExceeded) and q.retry_after_s == 5e-9
    assert isinstance(error(grpc.StatusCode.UNAVAILABLE, "x", None), Unavailable)
    assert isinstance(error(grpc.StatusCode.NOT_FOUND, "x", None), NotFound)
    assert isinstance(error(grpc.StatusCode.UNIMPLEMENTED, "x", None), Unimplemented)
    internal = error(grpc.StatusCode.DATA_LOSS, "x", None)
    assert internal.code == "DATA_LOSS"
