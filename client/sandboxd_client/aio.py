"""The asyncio client: `AsyncClient`, the same API as Client with `await`.

async with AsyncClient("127.0.0.1:50051", api_key=key) as c:
    r = await c.execute("javascript", "console.log(1 + 1)")
    execution_id = await c.submit("python", "print(42)", idempotency_key="job-17")
    print((await c.wait(execution_id, timeout_s=60)).result)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from . import _convert, _options
from ._base import BaseClient, WaitLoop
from ._options import DEFAULT_RETRY, RetryPolicy, Tls
from .errors import SandboxdError
from .proto import sandbox_pb2_grpc
from .types import ExecuteResult, Execution, Limits, Mode, Runtime, StreamEvent


class AsyncClient(BaseClient):
    """A connection to one sandboxd endpoint for asyncio code; close() it (or `async with`)."""

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
            grpc.aio.secure_channel(target, creds, options=opts)
            if creds is not None
            else grpc.aio.insecure_channel(target, options=opts)
        )
        self._stub = sandbox_pb2_grpc.SandboxStub(self._channel)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def execute(
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
        return _convert.result(await self._unary(self._stub.Execute, req, timeout_s))

    async def submit(
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
        """As Client.submit: UNAVAILABLE is retried only when an idempotency_key is given
        (then a retry cannot run the code twice)."""
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
        msg = await self._unary(self._stub.Submit, req, timeout_s, retry=bool(idempotency_key))
        return str(msg.execution_id)

    async def get_execution(
        self, execution_id: str, *, wait_ms: int = 0, timeout_s: float | None = None
    ) -> Execution:
        """As Client.get_execution."""
        req = self._get_request(execution_id, wait_ms)
        return _convert.execution(await self._unary(self._stub.GetExecution, req, timeout_s))

    async def cancel_execution(
        self, execution_id: str, *, timeout_s: float | None = None
    ) -> Execution:
        """As Client.cancel_execution."""
        req = self._cancel_request(execution_id)
        msg = await self._unary(self._stub.CancelExecution, req, timeout_s)
        return _convert.execution(msg.execution)

    async def wait(self, execution_id: str, timeout_s: float | None = None) -> Execution:
        """As Client.wait."""
        loop = WaitLoop(execution_id, timeout_s)
        while True:
            wait_ms, call_timeout_s = loop.next_poll()
            execution = await self.get_execution(
                execution_id, wait_ms=wait_ms, timeout_s=call_timeout_s
            )
            pause_s = loop.pause_s(execution)
            if pause_s is None:
                return execution
            await asyncio.sleep(pause_s)

    async def _unary(
        self, rpc: Any, req: Any, timeout_s: float | None, *, retry: bool = True
    ) -> Any:
        attempt = 1
        while True:
            try:
                return await rpc(req, timeout=timeout_s, metadata=self._metadata)
            except grpc.aio.AioRpcError as e:
                err = _convert.error(e.code(), e.details() or "", e.trailing_metadata())
            await asyncio.sleep(self._backoff_s(err, attempt, retry=retry))
            attempt += 1

    async def invoke(
        self,
        handler_code: str,
        event: Any = None,
        *,
        runtime: Runtime | str = Runtime.PYTHON,
        **kwargs: Any,
    ) -> ExecuteResult:
        return await self.execute(**_options.handler_call(handler_code, event, runtime, kwargs))

    async def stream(
        self,
        runtime: Runtime | str,
        code: str,
        *,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[StreamEvent]:
        req = _convert.request(runtime, code, **kwargs)
        attempt = 1
        while True:
            call = self._stub.ExecuteStream(req, timeout=timeout_s, metadata=self._metadata)
            received = False
            try:
                async for msg in call:
                    received = True
                    yield _convert.event(msg)
                return
            except grpc.aio.AioRpcError as e:
                err: SandboxdError = _convert.error(
                    e.code(), e.details() or "", e.trailing_metadata()
                )
            finally:
                call.cancel()
            # a stream is retried only before its first event
            await asyncio.sleep(self._backoff_s(err, attempt, retry=not received))
            attempt += 1
