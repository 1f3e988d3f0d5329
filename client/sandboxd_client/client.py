"""The synchronous client: `Client(target, api_key=..., tls=...)`.

with Client("127.0.0.1:50051", api_key=key) as c:
    r = c.execute("python", "print(input())", stdin=b"hi\\n")
    print(r.verdict, r.stdout)
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from . import _convert, _options
from ._options import DEFAULT_RETRY, RetryPolicy, Tls
from ._proto import sandbox_pb2_grpc
from .errors import SandboxdError
from .types import ExecuteResult, Limits, Mode, Runtime, StreamEvent


class Client:
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
        creds = _options.credentials(tls)
        opts = _options.channel_options(tls, channel_options)
        self._channel = (
            grpc.secure_channel(target, creds, options=opts)
            if creds is not None
            else grpc.insecure_channel(target, options=opts)
        )
        self._stub = sandbox_pb2_grpc.SandboxStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata = _options.metadata(api_key)
        self._retry = retry

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
        timeout_s: float | None = None,
    ) -> ExecuteResult:
        """Run `code` and return its result. Raises a SandboxdError subclass only when the
        request itself fails (bad input, auth, quota, unavailable, deadline)."""
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
        )
        attempt = 1
        while True:
            try:
                return _convert.result(
                    self._stub.Execute(req, timeout=timeout_s, metadata=self._metadata)
                )
            except grpc.RpcError as e:
                err = _convert.rpc_error(e)
            if not _options.retryable(err) or attempt >= self._retry.max_attempts:
                raise err
            time.sleep(self._retry.delay_s(attempt))
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
        """Run `code`, yielding Started, then Output chunks as produced, then the final
        ExecuteResult (whose stdout/stderr are empty: they came as chunks)."""
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
            if received or not _options.retryable(err) or attempt >= self._retry.max_attempts:
                raise err
            time.sleep(self._retry.delay_s(attempt))
            attempt += 1
