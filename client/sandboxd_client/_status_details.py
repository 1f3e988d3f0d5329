"""Decode the `grpc-status-details-bin` trailer (a `google.rpc.Status`) without
googleapis-common-protos, so that the client installs with grpcio and protobuf only.

Only the three detail messages the service sends are read: BadRequest, QuotaFailure and
RetryInfo. The wire format is decoded by hand (tag, varint, length-delimited); unknown fields
and unknown detail types are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import FieldViolation, QuotaViolation

TRAILER = "grpc-status-details-bin"
_TYPE_PREFIX = "type.googleapis.com/"


@dataclass
class StatusDetails:
    field_violations: list[FieldViolation] = field(default_factory=list)
    quota_violations: list[QuotaViolation] = field(default_factory=list)
    retry_delay_s: float | None = None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) for each field: an int for varints, bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


def _pair(data: bytes) -> tuple[str, str]:
    """Fields 1 and 2 of a message as strings (FieldViolation, QuotaFailure.Violation)."""
    first = second = ""
    for number, value in _fields(data):
        if isinstance(value, bytes):
            if number == 1:
                first = value.decode(errors="replace")
            elif number == 2:
                second = value.decode(errors="replace")
    return first, second


def parse(trailer: bytes) -> StatusDetails:
    """The details of a serialized google.rpc.Status; empty on anything malformed."""
    out = StatusDetails()
    try:
        for number, value in _fields(trailer):
            if number != 3 or not isinstance(value, bytes):  # Status.details (repeated Any)
                continue
            type_url, payload = "", b""
            for n, v in _fields(value):
                if n == 1 and isinstance(v, bytes):
                    type_url = v.decode(errors="replace")
                elif n == 2 and isinstance(v, bytes):
                    payload = v
            kind = type_url.removeprefix(_TYPE_PREFIX)
            if kind == "google.rpc.BadRequest":
                for n, v in _fields(payload):
                    if n == 1 and isinstance(v, bytes):
                        out.field_violations.append(FieldViolation(*_pair(v)))
            elif kind == "google.rpc.QuotaFailure":
                for n, v in _fields(payload):
                    if n == 1 and isinstance(v, bytes):
                        out.quota_violations.append(QuotaViolation(*_pair(v)))
            elif kind == "google.rpc.RetryInfo":
                for n, v in _fields(payload):
                    if n == 1 and isinstance(v, bytes):  # retry_delay: Duration
                        seconds = nanos = 0
                        for dn, dv in _fields(v):
                            if dn == 1 and isinstance(dv, int):
                                seconds = dv
                            elif dn == 2 and isinstance(dv, int):
                                nanos = dv
                        out.retry_delay_s = seconds + nanos / 1e9
    except ValueError:
        return StatusDetails()
    return out
