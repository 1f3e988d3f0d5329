"""Wrong metadata (authorization missing, malformed, unknown, duplicated, padded; noise
headers) and random execution ids (GetExecution, CancelExecution, with any wait_ms)."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc

from . import wire
from .conftest import FuzzDaemon, budget
from .statuses import check_error

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
header_names = st.from_regex(r"x-[a-z0-9-]{1,20}", fullmatch=True)


@pytest.fixture(scope="module")
def stub(fuzz_daemon: FuzzDaemon) -> pb_grpc.SandboxStub:
    return pb_grpc.SandboxStub(grpc.insecure_channel(fuzz_daemon.address))  # type: ignore[no-untyped-call]


@st.composite
def authorizations(draw: st.DrawFn, key: str) -> tuple[list[tuple[str, str]], bool]:
    """Metadata entries, and whether they hold exactly one valid `Bearer <key>`."""
    good = [f"Bearer {key}", f"bearer {key}", f"BEARER   {key}  "]
    bad = st.one_of(printable, st.just(""), st.just("Bearer"), st.just(key),
                    printable.map(lambda s: f"Bearer {s}"), st.just(f"Basic {key}"))  # fmt: skip
    values = draw(st.lists(st.one_of(st.sampled_from(good), bad), max_size=3))
    entries = [("authorization", v) for v in values]
    entries += draw(st.lists(st.tuples(header_names, printable), max_size=3))
    return entries, len(values) == 1 and values[0] in good


@budget(300)
@given(data=st.data(), method=st.sampled_from(["Execute", "GetExecution", "CancelExecution"]))
def test_metadata(
    fuzz_daemon: FuzzDaemon, stub: pb_grpc.SandboxStub, data: st.DataObject, method: str
) -> None:
    entries, valid = data.draw(authorizations(fuzz_daemon.keys["fuzz"]))
    request: object = (
        pb.ExecuteRequest(runtime=pb.RUNTIME_PYTHON, code="pass")
        if method == "Execute"
        else pb.GetExecutionRequest(execution_id="unknown") if method == "GetExecution"
        else pb.CancelExecutionRequest(execution_id="unknown")
    )  # fmt: skip
    try:
        getattr(stub, method)(request, metadata=entries, timeout=60)
    except grpc.RpcError as e:
        code = check_error(e)
        event(f"{method}: {code.name}")
        if not valid:
            assert code is grpc.StatusCode.UNAUTHENTICATED, (entries, e.details())
        else:
            assert method != "Execute" and code is grpc.StatusCode.NOT_FOUND, e.details()
    else:
        assert valid and method == "Execute", entries


ids = st.one_of(
    st.text(max_size=64),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    st.sampled_from(["x" * 100_000, "../../etc", "\x00", "*", "%s%n"]),
)


@budget(300)
@given(execution_id=ids, wait_ms=st.sampled_from([0, 1, 2**32 - 1]), cancel=st.booleans())
def test_unknown_execution_ids(
    fuzz_daemon: FuzzDaemon,
    stub: pb_grpc.SandboxStub,
    execution_id: str,
    wait_ms: int,
    cancel: bool,
) -> None:
    md = fuzz_daemon.metadata("fuzz")
    try:
        if cancel:
            stub.CancelExecution(
                pb.CancelExecutionRequest(execution_id=execution_id), metadata=md, timeout=60
            )
        else:
            stub.GetExecution(
                pb.GetExecutionRequest(execution_id=execution_id, wait_ms=wait_ms),
                metadata=md,
                timeout=60,
            )
    except grpc.RpcError as e:
        code = check_error(e)
        want = grpc.StatusCode.INVALID_ARGUMENT if not execution_id else grpc.StatusCode.NOT_FOUND
        assert code is want, e.details()
    else:
        pytest.fail(f"an execution id nobody submitted was found: {execution_id!r}")


def test_another_tenants_execution_is_not_found(
    fuzz_daemon: FuzzDaemon, stub: pb_grpc.SandboxStub
) -> None:
    mine = stub.Submit(wire_request(), metadata=fuzz_daemon.metadata("async"), timeout=60)
    for method, request in (
        ("GetExecution", pb.GetExecutionRequest(execution_id=mine.execution_id)),
        ("CancelExecution", pb.CancelExecutionRequest(execution_id=mine.execution_id)),
    ):
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, method)(request, metadata=fuzz_daemon.metadata("fuzz"), timeout=60)
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
    done = stub.GetExecution(
        pb.GetExecutionRequest(execution_id=mine.execution_id, wait_ms=30_000),
        metadata=fuzz_daemon.metadata("async"),
        timeout=60,
    )
    assert done.state == pb.EXECUTION_STATE_DONE and done.response.verdict == pb.VERDICT_OK


def wire_request() -> pb.ExecuteRequest:
    return pb.ExecuteRequest.FromString(wire.execute_request())
