"""Statuses stay small whatever the request quoted (found by tests/fuzz: a 5000-byte file path
or a 100 KB execution id came back as the client's own RESOURCE_EXHAUSTED "received metadata
size exceeds soft limit" instead of INVALID_ARGUMENT / NOT_FOUND)."""

from __future__ import annotations

from google.rpc import error_details_pb2, status_pb2

from sandboxd import errors
from sandboxd.api.status import (
    MAX_DESCRIPTION_BYTES,
    MAX_FIELD_BYTES,
    MAX_MESSAGE_BYTES,
    bounded,
    to_status,
)
from sandboxd_pool import InvalidRequest

GRPC_SOFT_METADATA_LIMIT = 8 * 1024


def _trailer_bytes(status: object) -> int:
    metadata = status.trailing_metadata  # type: ignore[attr-defined]
    size = sum(len(k) + len(v) for k, v in metadata)
    # grpc-message is percent-encoded: each non-ASCII byte takes three
    message = status.details.encode()  # type: ignore[attr-defined]
    return size + sum(3 if b > 0x7E or b < 0x20 else 1 for b in message)


def test_bounded_keeps_short_text_and_cuts_long_text_at_a_character_boundary() -> None:
    assert bounded("files['a']", 128) == "files['a']"
    cut = bounded("€" * 1000, 128)
    assert len(cut.encode()) <= 128
    assert cut.endswith("...")
    assert set(cut[:-3]) == {"€"}


def test_a_huge_quoted_path_leaves_a_small_invalid_argument() -> None:
    path = "\u00e9" * 100_000
    status = to_status(InvalidRequest(f"files[{path!r}]", f"{path} must be relative"))
    assert status.code.name == "INVALID_ARGUMENT"
    assert len(status.details.encode()) <= MAX_MESSAGE_BYTES
    assert _trailer_bytes(status) < GRPC_SOFT_METADATA_LIMIT / 2
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    bad = error_details_pb2.BadRequest()
    assert status_pb2.Status.FromString(details).details[0].Unpack(bad)
    violation = bad.field_violations[0]
    assert violation.field.startswith("files['\u00e9")
    assert len(violation.field.encode()) <= MAX_FIELD_BYTES
    assert len(violation.description.encode()) <= MAX_DESCRIPTION_BYTES


def test_a_huge_quoted_execution_id_leaves_a_small_not_found() -> None:
    status = to_status(errors.NotFound(f"execution {'x' * 100_000!r} not found"))
    assert status.code.name == "NOT_FOUND"
    assert status.details.startswith("execution 'xxx")
    assert _trailer_bytes(status) < GRPC_SOFT_METADATA_LIMIT / 2
