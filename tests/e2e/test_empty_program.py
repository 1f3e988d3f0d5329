"""An empty program through every entry point of the real daemon: the wire (Execute,
ExecuteStream, Submit), both clients and `sandboxd run`. It is OK with no output, as
`python -c ''` and `node -e ''` are; in HANDLER mode it defines no handler, a RUNTIME_ERROR
saying so."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from sandboxd_client import (
    AsyncClient,
    Client,
    ExecuteResult,
    ExecutionState,
    Mode,
    Started,
    Verdict,
)
from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc

from .daemon import Daemon

RUNTIMES = pytest.mark.parametrize("runtime", ["python", "javascript"])
PB_RUNTIME = {"python": pb.RUNTIME_PYTHON, "javascript": pb.RUNTIME_JAVASCRIPT}
NO_HANDLER = {
    "python": b"sandboxd: the code defines no function handler(event, context)\n",
    "javascript": b"sandboxd: the code defines no function exports.handler(event, context)\n",
}


def assert_empty_ok(result: ExecuteResult) -> None:
    assert result.verdict is Verdict.OK, result
    assert result.exit_code == 0 and result.signal is None, result
    assert (result.stdout, result.stderr, result.result) == (b"", b"", b""), result


def assert_empty_ok_pb(response: pb.ExecuteResponse) -> None:
    assert response.verdict == pb.VERDICT_OK, response
    assert response.HasField("exit_code") and response.exit_code == 0, response
    assert (response.stdout, response.stderr, response.result) == (b"", b"", b"")


@RUNTIMES
def test_wire_execute_stream_and_submit(zero_daemon: Daemon, runtime: str) -> None:
    """The generated stubs alone (no client library): `code` left unset on the wire."""
    request = pb.ExecuteRequest(runtime=PB_RUNTIME[runtime])
    with grpc.insecure_channel(zero_daemon.address) as channel:
        stub = pb_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]
        assert_empty_ok_pb(stub.Execute(request, timeout=60))
        events = list(stub.ExecuteStream(request, timeout=60))
        assert [e.WhichOneof("event") for e in events] == ["started", "response"]
        assert_empty_ok_pb(events[-1].response)
        submitted = stub.Submit(request, timeout=60)
        execution = stub.GetExecution(
            pb.GetExecutionRequest(execution_id=submitted.execution_id, wait_ms=30_000),
            timeout=60,
        )
        assert execution.state == pb.EXECUTION_STATE_DONE
        assert_empty_ok_pb(execution.response)


@RUNTIMES
def test_client_execute_stream_submit(client: Client, runtime: str) -> None:
    assert_empty_ok(client.execute(runtime, "", timeout_s=60))
    events = list(client.stream(runtime, "", timeout_s=60))
    assert isinstance(events[0], Started) and len(events) == 2, events
    assert isinstance(events[-1], ExecuteResult)
    assert_empty_ok(events[-1])
    execution = client.wait(client.submit(runtime, "", timeout_s=60), timeout_s=60)
    assert execution.state is ExecutionState.DONE and execution.result is not None
    assert_empty_ok(execution.result)


@RUNTIMES
def test_an_empty_handler_program_defines_no_handler(client: Client, runtime: str) -> None:
    """HANDLER mode keeps its meaning: there is no handler to call."""
    for result in (
        client.invoke("", {"x": 1}, runtime=runtime, timeout_s=60),
        client.execute(runtime, "", mode=Mode.HANDLER, timeout_s=60),
    ):
        assert result.verdict is Verdict.RUNTIME_ERROR, result
        assert result.exit_code == 1
        assert (result.stdout, result.stderr, result.result) == (b"", NO_HANDLER[runtime], b"")


def test_async_client(zero_daemon: Daemon) -> None:
    async def main() -> None:
        async with AsyncClient(zero_daemon.address) as c:
            for runtime in ("python", "javascript"):
                assert_empty_ok(await c.execute(runtime, "", timeout_s=60))
                events = [e async for e in c.stream(runtime, "", timeout_s=60)]
                assert isinstance(events[0], Started) and len(events) == 2, events
                assert isinstance(events[-1], ExecuteResult)
                assert_empty_ok(events[-1])
                execution = await c.wait(await c.submit(runtime, ""), timeout_s=60)
                assert execution.result is not None
                assert_empty_ok(execution.result)
            result = await c.invoke("", None)
            assert result.verdict is Verdict.RUNTIME_ERROR
            assert result.stderr == NO_HANDLER["python"]

    asyncio.run(main())


@pytest.mark.parametrize("name", ["empty.py", "empty.js"])
def test_sandboxd_run_an_empty_file(zero_daemon: Daemon, tmp_path: Path, name: str) -> None:
    prog = tmp_path / name
    prog.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "sandboxd", "run", str(prog), "--target", zero_daemon.address],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
