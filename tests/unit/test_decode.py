"""Undecodable requests name the field at fault (found by tests/fuzz: grpcio answered a string
field with invalid UTF-8, or a truncated message, with INTERNAL and a traceback in the log; the
daemon now refuses them with INVALID_ARGUMENT, see tests/fuzz/test_fuzz_wire.py)."""

from __future__ import annotations

import pytest
from fuzz import wire

from sandboxd.api.decode import WHOLE_REQUEST, Undecodable, diagnose, lenient_deserializer
from sandboxd_client.proto import sandbox_pb2 as pb

BAD_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\x80")


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda b: wire.execute_request(1, b), "code"),
        (lambda b: wire.execute_request(1, b"pass", wire.blob(wire.ARGS, b"x"), wire.blob(wire.ARGS, b)), "args[1]"),
        (lambda b: wire.execute_request(1, b"pass", wire.map_entry(wire.ENV, b, b"v")), "env[0].key"),
        (lambda b: wire.execute_request(1, b"pass", wire.map_entry(wire.ENV, b"K", b)), "env[0].value"),
        (lambda b: wire.execute_request(1, b"pass", wire.file(b"a"), wire.file(b)), "files[1].path"),
        (lambda b: wire.execute_request(1, b"pass", wire.blob(wire.IDEMPOTENCY_KEY, b)), "idempotency_key"),
        (lambda b: wire.execute_request(1, b"pass", wire.map_entry(wire.LABELS, b"k", b)), "labels[0].value"),
    ],
)  # fmt: skip
def test_invalid_utf8_names_the_string_field(build: object, field: str, bad: bytes) -> None:
    data = build(bad)  # type: ignore[operator]
    with pytest.raises(Exception, match="UTF-8"):
        pb.ExecuteRequest.FromString(data)
    assert lenient_deserializer(pb.ExecuteRequest)(data) == Undecodable(
        field, "is not valid UTF-8 (a protobuf string must be)"
    )


@pytest.mark.parametrize("message_type", [pb.GetExecutionRequest, pb.CancelExecutionRequest])
def test_invalid_utf8_execution_id(message_type: type) -> None:
    assert diagnose(message_type, wire.blob(wire.EXECUTION_ID, b"\xff")).field == "execution_id"


@pytest.mark.parametrize(
    "data",
    [
        wire.execute_request()[:-1],  # truncated
        b"\xff\xff\xff\xff",  # a varint that never ends
        wire.blob(wire.LIMITS, b"\xff\x00"),  # a sub-message that is not one
        wire.tag(wire.CODE, 3),  # a group start: deprecated wire type
        wire.tag(0, wire.VARINT) + b"\x01",  # field number 0
    ],
)
def test_malformed_protobuf_is_the_whole_request(data: bytes) -> None:
    found = lenient_deserializer(pb.ExecuteRequest)(data)
    assert isinstance(found, Undecodable)
    assert found.field == WHOLE_REQUEST
    assert "sandboxd.v1.ExecuteRequest" in found.description


def test_a_valid_request_decodes_as_usual() -> None:
    data = wire.execute_request(2, "console.log('é')".encode(), wire.blob(wire.ARGS, b"x"))
    decoded = lenient_deserializer(pb.ExecuteRequest)(data)
    assert isinstance(decoded, pb.ExecuteRequest)
    assert decoded.code == "console.log('é')" and list(decoded.args) == ["x"]
