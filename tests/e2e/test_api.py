"""Every RPC of sandboxd.v1.Sandbox and its error statuses, through the real daemon."""

from __future__ import annotations

import json

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sandboxd_client import (
    Client,
    ExecuteResult,
    InvalidRequest,
    Limits,
    Output,
    Started,
    Verdict,
)
from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc

from .daemon import Daemon

MIB = 1024 * 1024


def test_python_script_with_stdin_args_env_files(client: Client) -> None:
    r = client.execute(
        "python",
        "import os, sys\n"
        "print(sys.stdin.read().upper(), sys.argv[1:], os.environ['GREETING'],"
        " open('data/in.txt').read())\n",
        stdin=b"hello",
        args=["a", "b c"],
        env={"GREETING": "hi"},
        files={"data/in.txt": b"filed"},
    )
    assert r.verdict is Verdict.OK, r
    assert r.exit_code == 0 and r.signal is None
    assert r.stdout == b"HELLO ['a', 'b c'] hi filed\n"
    assert r.stderr == b""
    assert len(r.execution_id) == 32
    assert r.usage.wall_time_us > 0 and r.usage.peak_memory_bytes > 0


def test_javascript_script(client: Client) -> None:
    r = client.execute(
        "javascript",
        "let s=''; process.stdin.on('data', d => s += d);"
        "process.stdin.on('end', () => console.log(s.trim() + ' ' + process.argv.slice(2)));",
        stdin=b"from stdin",
        args=["x"],
    )
    assert r.verdict is Verdict.OK, r
    assert r.stdout == b"from stdin x\n"


@pytest.mark.parametrize(
    ("runtime", "code", "limits", "verdict", "exit_code", "signal", "blocked"),
    [
        ("python", "import sys; sys.exit(3)", None, Verdict.RUNTIME_ERROR, 3, None, ""),
        (
            "python",
            "import time; time.sleep(10)",
            Limits(wall_time_ms=300),
            Verdict.TIMEOUT,
            None,
            9,
            "",
        ),
        (
            "python",
            "while True: pass",
            Limits(cpu_time_ms=200, wall_time_ms=5000),
            Verdict.CPU_TIME_LIMIT,
            None,
            9,
            "",
        ),
        (
            "python",
            "b = bytearray(400 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1",
            Limits(memory_bytes=128 * MIB),
            Verdict.MEMORY_LIMIT,
            None,
            9,
            "",
        ),
        (
            "python",
            "while True: print('x' * 1000)",
            Limits(max_output_bytes=1000),
            Verdict.OUTPUT_LIMIT,
            None,
            9,
            "",
        ),
        ("javascript", "throw new Error('boom')", None, Verdict.RUNTIME_ERROR, 1, None, ""),
    ],
    ids=["exit3", "timeout", "cpu", "memory", "output", "js-throw"],
)
def test_verdicts_are_status_ok(
    client: Client,
    runtime: str,
    code: str,
    limits: Limits | None,
    verdict: Verdict,
    exit_code: int | None,
    signal: int | None,
    blocked: str,
) -> None:
    """User code failing is never a gRPC error: status OK with the exact verdict."""
    r = client.execute(runtime, code, limits=limits)
    assert r.verdict is verdict, r
    assert r.exit_code == exit_code
    assert r.signal == signal
    assert r.blocked_syscall == blocked
    if verdict is Verdict.OUTPUT_LIMIT:
        assert r.stdout_truncated and len(r.stdout) == 1000


def test_blocked_syscall_is_named(client: Client) -> None:
    r = client.execute(
        "python",
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall(101, 0, 0, 0, 0)\n"
        "print('survived')",
    )
    assert r.verdict is Verdict.SYSCALL_BLOCKED, r
    assert r.blocked_syscall == "ptrace"
    assert b"survived" not in r.stdout


def test_stream_sends_started_then_chunks_in_order_then_response(client: Client) -> None:
    code = (
        "import sys, time\n"
        "for i in range(5):\n"
        "    print(f'out{i}', flush=True)\n"
        "    print(f'err{i}', file=sys.stderr, flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    events = list(client.stream("python", code))
    assert isinstance(events[0], Started)
    assert isinstance(events[-1], ExecuteResult)
    assert all(isinstance(e, Output) for e in events[1:-1])
    final = events[-1]
    assert final.verdict is Verdict.OK
    assert final.execution_id == events[0].execution_id
    assert final.stdout == b"" and final.stderr == b""  # already sent as chunks
    out = b"".join(e.data for e in events[1:-1] if isinstance(e, Output) and e.stream == "stdout")
    err = b"".join(e.data for e in events[1:-1] if isinstance(e, Output) and e.stream == "stderr")
    assert out == b"".join(f"out{i}\n".encode() for i in range(5))
    assert err == b"".join(f"err{i}\n".encode() for i in range(5))
    # Produced over 250 ms with flushes: several chunks, not one at the end.
    assert len(events) > 4


def test_stream_of_a_failing_program_still_ends_with_its_verdict(client: Client) -> None:
    events = list(client.stream("javascript", "console.log('a'); process.exit(7)"))
    assert isinstance(events[-1], ExecuteResult)
    assert events[-1].verdict is Verdict.RUNTIME_ERROR and events[-1].exit_code == 7


@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_handler_mode(client: Client, runtime: str) -> None:
    code = {
        "python": "def handler(event, context):\n"
        "    return {'sum': sum(event['xs']), 'id': context.execution_id}\n",
        "javascript": "exports.handler = async (event, context) => "
        "({ sum: event.xs.reduce((a, b) => a + b, 0), id: context.executionId });",
    }[runtime]
    r = client.invoke(code, {"xs": [1, 2, 3]}, runtime=runtime)
    assert r.verdict is Verdict.OK, r
    assert r.result_value() == {"sum": 6, "id": r.execution_id}


@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_handler_errors_are_runtime_errors(client: Client, runtime: str) -> None:
    throws = {
        "python": "def handler(event, context):\n    raise ValueError('bad event')\n",
        "javascript": "exports.handler = async () => { throw new Error('bad event'); };",
    }[runtime]
    r = client.invoke(throws, None, runtime=runtime)
    assert r.verdict is Verdict.RUNTIME_ERROR
    assert b"bad event" in r.stderr
    assert r.result == b""
    unserialisable = {
        "python": "def handler(event, context):\n    return {1, 2}\n",
        "javascript": "exports.handler = () => ({ n: 10n });",
    }[runtime]
    r = client.invoke(unserialisable, None, runtime=runtime)
    assert r.verdict is Verdict.RUNTIME_ERROR
    assert b"sandboxd: the handler's return value is not JSON-serialisable" in r.stderr


def _bad_request_fields(call_error: grpc.RpcError) -> list[str]:
    """Field violations decoded with the standard googleapis types (not our client)."""
    status = rpc_status.from_call(call_error)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"code": "print(1)"}, "runtime"),
        (
            {"runtime": pb.RUNTIME_PYTHON, "code": "x", "files": [pb.File(path="../etc/x")]},
            "files['../etc/x']",
        ),
        ({"runtime": pb.RUNTIME_PYTHON, "code": "x", "event": b"{}"}, "event"),
        (
            {"runtime": pb.RUNTIME_PYTHON, "code": "x", "mode": pb.MODE_HANDLER, "event": b"{nope"},
            "event",
        ),
        (
            {"runtime": pb.RUNTIME_PYTHON, "code": "x", "limits": pb.Limits(memory_bytes=1000)},
            "limits.memory_bytes",
        ),
        ({"runtime": pb.RUNTIME_PYTHON, "code": "x", "env": {"A=B": "1"}}, "env['A=B']"),
        (
            {
                "runtime": pb.RUNTIME_PYTHON,
                "code": "x",
                "files": [pb.File(path="a"), pb.File(path="a")],
            },
            "files[1].path",
        ),
    ],
    ids=[
        "no-runtime",
        "path-escape",
        "event-in-script",
        "bad-json",
        "low-memory",
        "env",
        "dup-file",
    ],
)
@pytest.mark.parametrize("rpc", ["Execute", "Submit"])
def test_invalid_argument_with_field_violations(
    zero_daemon: Daemon, request_fields: dict[str, object], field: str, rpc: str
) -> None:
    """Submit admits exactly like Execute: the same violations, before anything is queued."""
    with grpc.insecure_channel(zero_daemon.address) as channel:
        stub = pb_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, rpc)(pb.ExecuteRequest(**request_fields), timeout=30)  # type: ignore[arg-type]
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    fields = _bad_request_fields(info.value)
    assert fields == [field]


def test_client_exposes_field_violations(client: Client) -> None:
    with pytest.raises(InvalidRequest) as info:
        client.execute("python", "print(1)", limits=Limits(memory_bytes=1000))
    assert [v.field for v in info.value.violations] == ["limits.memory_bytes"]
    assert "below the minimum" in info.value.violations[0].description


def test_async_rpcs_submit_get_cancel(zero_daemon: Daemon) -> None:
    """The wire contract of the async RPCs, through the generated stubs alone."""
    with grpc.insecure_channel(zero_daemon.address) as channel:
        stub = pb_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]
        submitted = stub.Submit(
            pb.ExecuteRequest(runtime=pb.RUNTIME_PYTHON, code="print(6 * 7)"), timeout=30
        )
        assert len(submitted.execution_id) == 32
        execution = stub.GetExecution(
            pb.GetExecutionRequest(execution_id=submitted.execution_id, wait_ms=30_000),
            timeout=60,
        )
        assert execution.execution_id == submitted.execution_id
        assert execution.state == pb.EXECUTION_STATE_DONE
        assert execution.response.execution_id == submitted.execution_id
        assert execution.response.verdict == pb.VERDICT_OK
        assert execution.response.stdout == b"42\n"
        # cancelling a finished execution changes nothing and is not an error
        cancelled = stub.CancelExecution(
            pb.CancelExecutionRequest(execution_id=submitted.execution_id), timeout=30
        )
        assert cancelled.execution == execution


@pytest.mark.parametrize("rpc", ["GetExecution", "CancelExecution"])
def test_unknown_execution_ids_are_not_found(zero_daemon: Daemon, rpc: str) -> None:
    request = {
        "GetExecution": pb.GetExecutionRequest(execution_id="0" * 32),
        "CancelExecution": pb.CancelExecutionRequest(execution_id="0" * 32),
    }[rpc]
    with grpc.insecure_channel(zero_daemon.address) as channel:
        stub = pb_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, rpc)(request, timeout=30)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("rpc", "request_message", "field"),
    [
        ("GetExecution", pb.GetExecutionRequest(), "execution_id"),
        ("CancelExecution", pb.CancelExecutionRequest(), "execution_id"),
        (
            "Execute",
            pb.ExecuteRequest(runtime=pb.RUNTIME_PYTHON, code="1", idempotency_key="k"),
            "idempotency_key",
        ),
        (
            "Submit",
            pb.ExecuteRequest(runtime=pb.RUNTIME_PYTHON, code="1", idempotency_key="k" * 129),
            "idempotency_key",
        ),
    ],
    ids=["get-no-id", "cancel-no-id", "key-on-execute", "key-too-long"],
)
def test_async_invalid_arguments(
    zero_daemon: Daemon, rpc: str, request_message: object, field: str
) -> None:
    with grpc.insecure_channel(zero_daemon.address) as channel:
        stub = pb_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, rpc)(request_message, timeout=30)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert _bad_request_fields(info.value) == [field]


def test_result_is_json_of_any_value(client: Client) -> None:
    r = client.invoke("def handler(event, context):\n    return event\n", [1, "two", None])
    assert r.verdict is Verdict.OK
    assert json.loads(r.result) == [1, "two", None]
