"""What Client and AsyncClient share, as httpx's BaseClient does for its two clients: the
channel's options and credentials, the call metadata, the retry decision, the requests of the
execution RPCs, and the steps of `wait()`. Each client adds only its I/O: blocking calls and
`time.sleep`, or awaits and `asyncio.sleep`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc

from . import _options
from .errors import DeadlineExceeded, SandboxdError
from .proto import sandbox_pb2 as pb
from .types import Execution


class BaseClient:
    def __init__(
        self,
        *,
        api_key: str | None,
        tls: _options.Tls | bool | None,
        retry: _options.RetryPolicy,
        channel_options: Sequence[tuple[str, Any]],
    ) -> None:
        self._credentials: grpc.ChannelCredentials | None = _options.credentials(tls)
        self._channel_options = _options.channel_options(tls, channel_options)
        self._metadata = _options.metadata(api_key)
        self._retry = retry

    def _backoff_s(self, error: SandboxdError, attempt: int, *, retry: bool = True) -> float:
        """Seconds to wait before attempt `attempt + 1`; raises `error` when it is not to be
        retried (not UNAVAILABLE, retries not wanted here, or the policy's attempts used)."""
        if not retry or not _options.retryable(error) or attempt >= self._retry.max_attempts:
            raise error
        return self._retry.delay_s(attempt)

    @staticmethod
    def _get_request(execution_id: str, wait_ms: int) -> pb.GetExecutionRequest:
        return pb.GetExecutionRequest(execution_id=execution_id, wait_ms=wait_ms)

    @staticmethod
    def _cancel_request(execution_id: str) -> pb.CancelExecutionRequest:
        return pb.CancelExecutionRequest(execution_id=execution_id)


class WaitLoop:
    """`wait(execution_id, timeout_s)`: long-polls until the execution is DONE or CANCELLED.

    loop = WaitLoop(execution_id, timeout_s)
    while True:
        wait_ms, call_timeout_s = loop.next_poll()
        execution = get_execution(execution_id, wait_ms=wait_ms, timeout_s=call_timeout_s)
        pause_s = loop.pause_s(execution)    # DeadlineExceeded once timeout_s has passed
        if pause_s is None:
            return execution
        sleep(pause_s)
    """

    def __init__(self, execution_id: str, timeout_s: float | None) -> None:
        self._execution_id = execution_id
        self._timeout_s = timeout_s
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._asked = 0.0
        self._wait_ms = 0

    def next_poll(self) -> tuple[int, float]:
        """(wait_ms to ask the server for, this call's own deadline in seconds)."""
        remaining_s = None if self._deadline is None else self._deadline - time.monotonic()
        self._wait_ms = _options.wait_ms(remaining_s)
        self._asked = time.monotonic()
        return self._wait_ms, self._wait_ms / 1000 + _options.WAIT_CALL_MARGIN_S

    def pause_s(self, execution: Execution) -> float | None:
        """None when `execution` is the answer; else how long to pause before the next poll
        (a server that answered early without a final state is not asked again at once)."""
        if execution.finished:
            return None
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise DeadlineExceeded(
                f"execution {self._execution_id} is still {execution.state.value} after "
                f"{self._timeout_s:g} s"
            )
        if time.monotonic() - self._asked < self._wait_ms / 2000:
            return _options.EARLY_ANSWER_PAUSE_S
        return 0.0
