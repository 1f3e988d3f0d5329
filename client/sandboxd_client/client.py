"""The synchronous client: `Client(target, api_key=..., tls=...)`.

with Client("127.0.0.1:50051", api_key=key) as c:
    r = c.execute("python", "print(input())", stdin=b"hi\\n")
    print(r.verdict, r.stdout)
    execution_id = c.submit("python", "print(42)", idempotency_key="job-17")
    print(c.wait(execution_id, timeout_s=60).result)
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from . import _convert, _options
from ._base import BaseClient, WaitLoop
from ._options import DEFAULT_RETRY, RetryPolicy, Tls
from .errors import SandboxdError
from .proto import sandbox_pb2_grpc
from .types import ExecuteResult, Execution, Limits, Mode, Runtime, StreamEvent


class Client(BaseClient):
    """A connection to one sandboxd endpoint. Thread-safe; close() it (or use `with`)."""

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        tls: Tls | bool | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(api_key=api_key, tls=tls, retry=retry, channel_options=channel_options)
        creds, opts = self._credentials, self._channel_options
        self._channel = (
            grpc.secure_channel(target, creds, options=opts)
            if creds is not None
            else grpc.insecure_channel(target, options=opts)
        )
        self._stub = sandbox_pb2_grpc.SandboxStub(self._channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def execute(
        self,
        runtime: Runtime | str,
        code: str,
        *,
        stdin: bytes = b"",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        mode: Mode = Mode.SCRIPT,
        event: bytes = b"",
        labels: Mapping[str, str] | None = None,
        egress: Sequence[str] = (),
        environment: str = "",
        timeout_s: float | None = None,
    ) -> ExecuteResult:
        """Run `code` and return its result (with the files it left in out/). Raises a
        SandboxdError subclass only when the request itself fails (bad input, auth, quota,
        unavailable, deadline). environment: the name of one of the server's environments
        (its packages importable, its preload list loaded); empty: the bare runtime."""
        req = _convert.request(
            runtime,
            code,
            stdin=stdin,
            args=args,
            env=env,
            files=files,
            limits=limits,
            mode=mode,
            event=event,
            labels=labels,
            egress=egress,
            environment=environment,
        )
        return _convert.result(self._unary(self._stub.Execute, req, timeout_s))

    def submit(
        self,
        runtime: Runtime | str,
        code: str,
        *,
        stdin: bytes = b"",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        mode: Mode = Mode.SCRIPT,
        event: bytes = b"",
        labels: Mapping[str, str] | None = None,
        environment: str = "",
        idempotency_key: str = "",
        egress: Sequence[str] = (),
        timeout_s: float | None = None,
    ) -> str:
        """Queue `code` for asynchronous execution; its execution id, at once. Fetch the
        result with get_execution() or wait(); the server keeps it for its retention time
        (default 1 hour) after the execution finished.

        idempotency_key (at most 128 bytes): a second submit with the same key from the same
        tenant, while the first's result is kept, returns the first execution id and runs
        nothing. Only with a key is UNAVAILABLE retried: without one, a submit whose answer
        was lost may still have queued the job, and a retry would run it a second time."""
        req = _convert.request(
            runtime,
            code,
            stdin=stdin,
            args=args,
            env=env,
            files=files,
            limits=limits,
            mode=mode,
            event=event,
            labels=labels,
            environment=environment,
            idempotency_key=idempotency_key,
            egress=egress,
        )
        retry = bool(idempotency_key)
        return str(self._unary(self._stub.Submit, req, timeout_s, retry=retry).execution_id)

    def get_execution(
        self, execution_id: str, *, wait_ms: int = 0, timeout_s: float | None = None
    ) -> Execution:
        """The execution's state; with `wait_ms`, the server waits up to that long (at most
        30000, and not past this call's deadline) for it to finish. NotFound for an id that
        is unknown, another tenant's, or whose result has expired."""
        req = self._get_request(execution_id, wait_ms)
        return _convert.execution(self._unary(self._stub.GetExecution, req, timeout_s))

    def cancel_execution(self, execution_id: str, *, timeout_s: float | None = None) -> Execution:
        """Cancel it: a queued execution becomes CANCELLED and never runs; a running one's
        worker is killed (DONE, verdict KILLED). A finished one is returned unchanged, so
        cancelling twice is harmless."""
        req = self._cancel_request(execution_id)
        msg = self._unary(self._stub.CancelExecution, req, timeout_s)
        return _convert.execution(msg.execution)

    def wait(self, execution_id: str, timeout_s: float | None = None) -> Execution:
        """Long-poll until the execution is DONE or CANCELLED and return it; DeadlineExceeded
        if `timeout_s` passes first (the execution goes on: cancel it if it is not wanted)."""
        loop = WaitLoop(execution_id, timeout_s)
        while True:
            wait_ms, call_timeout_s = loop.next_poll()
            execution = self.get_execution(execution_id, wait_ms=wait_ms, timeout_s=call_timeout_s)
            pause_s = loop.pause_s(execution)
            if pause_s is None:
                return execution
            time.sleep(pause_s)

    def _unary(self, rpc: Any, req: Any, timeout_s: float | None, *, retry: bool = True) -> Any:
        """One unary call, retried per the RetryPolicy (when `retry`); typed errors."""
        attempt = 1
        while True:
            try:
                return rpc(req, timeout=timeout_s, metadata=self._metadata)
            except grpc.RpcError as e:
                err = _convert.rpc_error(e)
            time.sleep(self._backoff_s(err, attempt, retry=retry))
            attempt += 1

    def invoke(
        self,
        handler_code: str,
        event: Any = None,
        *,
        runtime: Runtime | str = Runtime.PYTHON,
        **kwargs: Any,
    ) -> ExecuteResult:
        """Call a Lambda-style handler with `event` (any JSON-serialisable value). The
        return value is in `.result` (JSON) and `.result_value()`."""
        return self.execute(**_options.handler_call(handler_code, event, runtime, kwargs))

    def stream(
        self,
        runtime: Runtime | str,
        code: str,
        *,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> Iterator[StreamEvent]:
        """Run `code`, yielding Started, then Output chunks as produced, then an OutputFile
        per file it left in out/, then the final ExecuteResult (whose stdout, stderr and
        files are empty: they came as events)."""
        req = _convert.request(runtime, code, **kwargs)
        attempt = 1
        while True:
            call = self._stub.ExecuteStream(req, timeout=timeout_s, metadata=self._metadata)
            received = False
            try:
                for msg in call:
                    received = True
                    yield _convert.event(msg)
                return
            except grpc.RpcError as e:
                err: SandboxdError = _convert.rpc_error(e)
            finally:
                call.cancel()
            # a stream is retried only before its first event
            time.sleep(self._backoff_s(err, attempt, retry=not received))
            attempt += 1
