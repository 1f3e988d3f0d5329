"""The client's async-execution pieces without a server: Execution conversion, the long-poll
length wait() asks for, and Submit retrying UNAVAILABLE only with an idempotency key."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from sandboxd_client import (
    Client,
    Execution,
    ExecutionState,
    InternalError,
    RetryPolicy,
    Unavailable,
    Verdict,
    _convert,
    _options,
)
from sandboxd_client.proto import sandbox_pb2 as pb


def test_a_done_execution_carries_its_result() -> None:
    msg = pb.Execution(
        execution_id="e1",
        state=pb.EXECUTION_STATE_DONE,
        response=pb.ExecuteResponse(execution_id="e1", verdict=pb.VERDICT_KILLED, signal=9),
    )
    execution = _convert.execution(msg)
    assert execution.state is ExecutionState.DONE and execution.finished
    assert execution.result is not None
    assert execution.result.verdict is Verdict.KILLED and execution.result.signal == 9


@pytest.mark.parametrize(
    ("state", "expected", "finished"),
    [
        (pb.EXECUTION_STATE_QUEUED, ExecutionState.QUEUED, False),
        (pb.EXECUTION_STATE_RUNNING, ExecutionState.RUNNING, False),
        (pb.EXECUTION_STATE_CANCELLED, ExecutionState.CANCELLED, True),
    ],
)
def test_other_states_have_no_result(state: int, expected: ExecutionState, finished: bool) -> None:
    execution = _convert.execution(pb.Execution(execution_id="e", state=state))  # type: ignore[arg-type]
    assert execution == Execution("e", expected, None)
    assert execution.finished is finished


def test_an_unknown_state_is_an_internal_error() -> None:
    with pytest.raises(InternalError):
        _convert.execution(pb.Execution(execution_id="e", state=99))  # type: ignore[arg-type]


def test_the_request_carries_the_idempotency_key() -> None:
    assert _convert.request("python", "1", idempotency_key="k").idempotency_key == "k"
    assert _convert.request("python", "1").idempotency_key == ""


@pytest.mark.parametrize(
    ("remaining_s", "wait_ms"),
    [(None, 30_000), (100.0, 30_000), (2.5, 2500), (0.0004, 0), (-1.0, 0)],
)
def test_wait_asks_for_at_most_the_server_cap(remaining_s: float | None, wait_ms: int) -> None:
    assert _options.wait_ms(remaining_s) == wait_ms


class _Unavailable(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "draining"

    def trailing_metadata(self) -> Any:
        return ()


class _FlakySubmit:
    """Fails with UNAVAILABLE `failures` times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, request: pb.ExecuteRequest, **kwargs: Any) -> pb.SubmitResponse:
        self.calls += 1
        if self.calls <= self.failures:
            raise _Unavailable()
        return pb.SubmitResponse(execution_id="e1")


class _Stub:
    def __init__(self, submit: _FlakySubmit) -> None:
        self.Submit = submit


def _client(submit: _FlakySubmit) -> Client:
    c = Client("127.0.0.1:1", retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.001))
    c._stub = _Stub(submit)
    return c


def test_submit_without_a_key_is_not_retried() -> None:
    submit = _FlakySubmit(failures=1)
    with _client(submit) as c, pytest.raises(Unavailable):
        c.submit("python", "print(1)")
    assert submit.calls == 1


def test_submit_with_a_key_is_retried() -> None:
    submit = _FlakySubmit(failures=2)
    with _client(submit) as c:
        assert c.submit("python", "print(1)", idempotency_key="k") == "e1"
    assert submit.calls == 3
