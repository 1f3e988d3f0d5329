"""Bytes the protobuf library would never build, through a generic channel with identity
serializers to all five RPCs: invalid UTF-8 in every string field, unknown enum values,
duplicated and unknown fields, wrong wire types, truncated and random bytes. The daemon must
answer a documented status (never INTERNAL), and INVALID_ARGUMENT with a field violation for
what does not decode."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sandboxd_client.proto import sandbox_pb2 as pb

from . import wire
from .conftest import FuzzDaemon, budget
from .statuses import check_error, check_response, violation_field

METHODS = ("Execute", "ExecuteStream", "Submit", "GetExecution", "CancelExecution")
BAD_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\x80b"])
TIMEOUT_S = 60.0


def test_field_numbers_match_the_proto() -> None:
    fields = pb.ExecuteRequest.DESCRIPTOR.fields_by_name
    assert {n: fields[n].number for n in ("runtime", "code", "args", "env", "files")} == {
        "runtime": wire.RUNTIME, "code": wire.CODE, "args": wire.ARGS, "env": wire.ENV,
        "files": wire.FILES,
    }  # fmt: skip
    assert fields["limits"].number == wire.LIMITS and fields["labels"].number == wire.LABELS
    assert fields["idempotency_key"].number == wire.IDEMPOTENCY_KEY


@pytest.fixture(scope="module")
def channel(fuzz_daemon: FuzzDaemon) -> grpc.Channel:
    return grpc.insecure_channel(fuzz_daemon.address)


def call(channel: grpc.Channel, method: str, data: bytes, metadata: object) -> list[bytes]:
    path = f"/sandboxd.v1.Sandbox/{method}"
    if method == "ExecuteStream":
        return list(channel.unary_stream(path)(data, metadata=metadata, timeout=TIMEOUT_S))
    return [channel.unary_unary(path)(data, metadata=metadata, timeout=TIMEOUT_S)]


def check_answer(channel: grpc.Channel, method: str, data: bytes, fuzz: FuzzDaemon) -> str:
    tenant = "async" if method == "Submit" else "fuzz"
    try:
        answers = call(channel, method, data, fuzz.metadata(tenant))
    except grpc.RpcError as e:
        code = check_error(e)
        event(f"{method}: {code.name}")
        return violation_field(e) if code is grpc.StatusCode.INVALID_ARGUMENT else code.name
    if method == "Execute":
        check_response(pb.ExecuteResponse.FromString(answers[0]))
    elif method == "ExecuteStream":
        check_response(pb.ExecuteEvent.FromString(answers[-1]).response)
    event(f"{method}: OK")
    return "OK"


string_fields = st.sampled_from(
    [
        lambda b: wire.execute_request(1, b),
        lambda b: wire.execute_request(1, b"pass", wire.blob(wire.ARGS, b)),
        lambda b: wire.execute_request(1, b"pass", wire.map_entry(wire.ENV, b, b"v")),
        lambda b: wire.execute_request(1, b"pass", wire.map_entry(wire.ENV, b"K", b)),
        lambda b: wire.execute_request(1, b"pass", wire.file(b)),
        lambda b: wire.execute_request(1, b"pass", wire.blob(wire.IDEMPOTENCY_KEY, b)),
        lambda b: wire.execute_request(1, b"pass", wire.map_entry(wire.LABELS, b, b"v")),
    ]
)


@budget(150)
@given(
    method=st.sampled_from(METHODS[:3]),
    build=string_fields,
    bad=BAD_UTF8,
    prefix=st.text(max_size=5),
)
def test_invalid_utf8_is_invalid_argument_naming_the_field(
    fuzz_daemon: FuzzDaemon,
    channel: grpc.Channel,
    method: str,
    build: object,
    bad: bytes,
    prefix: str,
) -> None:
    data = build(prefix.encode() + bad)  # type: ignore[operator]
    field = check_answer(channel, method, data, fuzz_daemon)
    assert field in {"code", "args[0]", "env[0].key", "env[0].value", "files[0].path",
                     "idempotency_key", "labels[0].key"}, field  # fmt: skip


@budget(60)
@given(method=st.sampled_from(METHODS[3:]), bad=BAD_UTF8)
def test_invalid_utf8_execution_id(
    fuzz_daemon: FuzzDaemon, channel: grpc.Channel, method: str, bad: bytes
) -> None:
    data = wire.blob(wire.EXECUTION_ID, b"id" + bad)
    assert check_answer(channel, method, data, fuzz_daemon) == "execution_id"


extra_fields = st.lists(
    st.one_of(
        st.builds(wire.uint, st.integers(1, 11), st.integers(-(2**63), 2**64 - 1)),
        st.builds(wire.blob, st.integers(1, 2000), st.binary(max_size=20)),
        st.builds(wire.fixed64, st.integers(1, 11), st.binary(min_size=8, max_size=8)),
        st.builds(wire.fixed32, st.integers(1, 11), st.binary(min_size=4, max_size=4)),
        st.builds(wire.uint, st.integers(12, 2**29 - 1), st.integers(0, 2**64 - 1)),
        st.builds(lambda n: wire.blob(wire.LIMITS, wire.uint(n, 2**64 - 1)), st.integers(1, 9)),
    ),
    max_size=6,
)


@budget(500)
@given(method=st.sampled_from(METHODS), extra=extra_fields)
def test_duplicated_unknown_and_mistyped_fields(
    fuzz_daemon: FuzzDaemon, channel: grpc.Channel, method: str, extra: list[bytes]
) -> None:
    """A valid request followed by fields of any number and wire type: duplicates of known
    fields (the last wins, repeated ones add up), unknown fields, unknown enum values."""
    base = wire.execute_request() if method in METHODS[:3] else wire.blob(1, b"nope")
    check_answer(channel, method, base + b"".join(extra), fuzz_daemon)


@budget(500)
@given(method=st.sampled_from(METHODS), data=st.data())
def test_truncated_mutated_and_random_bytes(
    fuzz_daemon: FuzzDaemon, channel: grpc.Channel, method: str, data: st.DataObject
) -> None:
    base = (
        wire.execute_request(
            1, b"pass", wire.blob(wire.ARGS, b"a"), wire.file(b"f", b"x"),
            wire.blob(wire.LIMITS, wire.uint(wire.WALL_TIME_MS, 2000)),
        )
        if method in METHODS[:3]
        else wire.blob(1, b"0123456789abcdef") + wire.uint(2, 10)
    )  # fmt: skip
    how = data.draw(st.sampled_from(["truncate", "flip", "insert", "random"]))
    if how == "truncate":
        body = base[: data.draw(st.integers(0, len(base) - 1))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(base) - 1))
        body = base[:i] + bytes([data.draw(st.integers(0, 255))]) + base[i + 1 :]
    elif how == "insert":
        i = data.draw(st.integers(0, len(base)))
        body = base[:i] + data.draw(st.binary(min_size=1, max_size=8)) + base[i:]
    else:
        body = data.draw(st.binary(max_size=200))
    check_answer(channel, method, body, fuzz_daemon)
