"""Well-formed but extreme and hostile ExecuteRequests through the real daemon: Execute,
ExecuteStream and Submit (then GetExecution until it is done). Every answer must be exactly
what the oracle (oracle.py, written from the proto's contract) says: OK with a verdict,
INVALID_ARGUMENT naming a field the request breaks,
PERMISSION_DENIED, or gRPC's own RESOURCE_EXHAUSTED for a message over the maximum."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc

from .conftest import TENANT_RUNTIMES, FuzzDaemon, budget
from .oracle import Expected, expected, names_a_violation
from .statuses import check_error, check_response, violation_field
from .strategies import execute_requests

CALL_TIMEOUT_S = 60.0
tenants = st.sampled_from(["fuzz", "fuzz", "fuzz", "pyonly"])


@pytest.fixture(scope="module")
def stub(fuzz_daemon: FuzzDaemon) -> pb_grpc.SandboxStub:
    channel = grpc.insecure_channel(fuzz_daemon.address)
    return pb_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]


def check_refusal(error: grpc.RpcError, want: Expected) -> None:
    event(f"refused: {want.status} {sorted(f.split('[')[0] for f in want.fields)}")
    code = check_error(error, too_large=want.status == "TOO_LARGE")
    if want.status != "TOO_LARGE":
        assert code.name == want.status, (code, error.details(), want)
    if want.status == "INVALID_ARGUMENT":
        assert names_a_violation(violation_field(error), want), (error.details(), want)


@budget(400)
@given(msg=execute_requests(), tenant=tenants)
def test_execute(
    fuzz_daemon: FuzzDaemon, stub: pb_grpc.SandboxStub, msg: pb.ExecuteRequest, tenant: str
) -> None:
    want = expected(msg, TENANT_RUNTIMES[tenant])
    try:
        response = stub.Execute(msg, metadata=fuzz_daemon.metadata(tenant), timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as e:
        check_refusal(e, want)
    else:
        assert want.status == "OK", (want, response.verdict)
        check_response(response)
        event(f"ran: {pb.Verdict.Name(response.verdict)}")


@budget(150)
@given(msg=execute_requests(), tenant=tenants)
def test_execute_stream(
    fuzz_daemon: FuzzDaemon, stub: pb_grpc.SandboxStub, msg: pb.ExecuteRequest, tenant: str
) -> None:
    want = expected(msg, TENANT_RUNTIMES[tenant])
    events: list[pb.ExecuteEvent] = []
    try:
        for item in stub.ExecuteStream(
            msg, metadata=fuzz_daemon.metadata(tenant), timeout=CALL_TIMEOUT_S
        ):
            events.append(item)
    except grpc.RpcError as e:
        assert not events, "a stream that started must end with its response, not an error"
        check_refusal(e, want)
    else:
        assert want.status == "OK", want
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "started" and kinds[-1] == "response", kinds
        assert set(kinds[1:-1]) <= {"stdout", "stderr"}, kinds
        check_response(events[-1].response)
        event(f"ran: {pb.Verdict.Name(events[-1].response.verdict)}")


@budget(150)
@given(msg=execute_requests())
def test_submit_then_get(
    fuzz_daemon: FuzzDaemon, stub: pb_grpc.SandboxStub, msg: pb.ExecuteRequest
) -> None:
    want = expected(msg, TENANT_RUNTIMES["async"], submit=True)
    metadata = fuzz_daemon.metadata("async")
    try:
        submitted = stub.Submit(msg, metadata=metadata, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as e:
        check_refusal(e, want)
        return
    assert want.status == "OK", want
    assert submitted.execution_id
    execution = stub.GetExecution(
        pb.GetExecutionRequest(execution_id=submitted.execution_id, wait_ms=30_000),
        metadata=metadata,
        timeout=CALL_TIMEOUT_S,
    )
    assert execution.execution_id == submitted.execution_id
    assert execution.state == pb.EXECUTION_STATE_DONE, execution
    check_response(execution.response)
    event(f"ran: {pb.Verdict.Name(execution.response.verdict)}")
