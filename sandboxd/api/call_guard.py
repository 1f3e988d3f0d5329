"""Admission at the edge: who may hold a server thread, for how long.

grpcio's synchronous server hands every call to a thread of its pool as soon as the method is
known; for a unary request that thread then waits for the request body, with no timeout. The
API key used to be checked inside the handler, after the body had arrived, so anyone could
take every thread with calls whose body never comes (or with idle reflection streams) and
stall every tenant. A server interceptor runs in grpcio's polling thread before any pool
thread is committed and sees the call's metadata; `CallGuard` is that interceptor:

- `sandboxd.v1.Sandbox` calls are authenticated there: a missing or unknown key is refused
  (UNAUTHENTICATED) by a handler that never waits for, or reads, the request body. A tenant
  has at most `max_open_calls` calls open at once (its tenants-file value, else
  `--max-calls-per-tenant`); more are refused at once with RESOURCE_EXHAUSTED.
- Calls of the services that need no key (health, reflection) are at most
  `--max-public-calls` at once, each ended after `--public-call-max-s`. Their request
  messages are read one at a time (first come, first served), must arrive within
  PUBLIC_REQUEST_TIMEOUT_S, and are refused past MAX_PUBLIC_REQUEST_BYTES: gRPC's receive
  limit is the tenants' 64 MiB for every method and a body is buffered whole once a handler
  asks for it, so this keeps what callers without a key make the daemon hold to one body.
- Every admitted call is registered with a watchdog until it ends: one whose request message
  has not arrived, or whose client has not taken a response message, for `--idle-timeout-s`
  (plus a second per MiB of that message) is ended with DEADLINE_EXCEEDED (so is a public
  call past its lifetime).

Counting starts in the interceptor and ends when grpcio reports the call over (its
termination callback), so a response still waiting for a client that does not read counts
too. To time the wait for the request body, every admitted handler is served as a
request-streaming one that reads the single request itself; a unary call without a request
message gets grpcio's own answer (UNIMPLEMENTED)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ..errors import QuotaExceeded, Unauthenticated
from ..tenants.auth import Authenticator
from .status import to_status

WATCHDOG_TICK_S = 0.1
MAX_PUBLIC_REQUEST_BYTES = 64 * 1024  # health and reflection requests are a few bytes
PUBLIC_REQUEST_TIMEOUT_S = 2.0  # their clients send the request with the call
MIN_CLIENT_BYTES_PER_S = 1024 * 1024  # a response message may take a second per MiB more
OnRefused = Callable[[grpc.StatusCode, BaseException], None]


@dataclass(frozen=True)
class GuardLimits:
    max_calls_per_tenant: int  # a tenant's open calls, unless its tenants-file entry says
    max_public_calls: int  # health and reflection calls open at once
    public_call_max_s: float  # a health or reflection call lasts at most this long
    idle_timeout_s: float  # no request / no response taken for this long: the call ends


class _TooLarge:
    """What a public request's deserializer returns for a body over the limit."""


_TOO_LARGE = _TooLarge()


def _small_only(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        if len(data) > MAX_PUBLIC_REQUEST_BYTES:
            return _TOO_LARGE
        return data if deserializer is None else deserializer(data)

    return deserialize


class _Call:
    """One admitted call while it is open: when the watchdog must end it, and why."""

    __slots__ = ("context", "deadline", "ended", "lifetime_deadline", "reason", "wait_s")

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.context = context
        self.deadline: float | None = None  # of the current wait (request or response)
        self.wait_s = 0.0  # how long the current wait may be
        self.reason = ""
        self.lifetime_deadline: float | None = None
        self.ended = False


class Watchdog:
    """Ends calls whose current wait, or whose lifetime, is over (one thread for all)."""

    def __init__(self, idle_timeout_s: float) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sandboxd-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def add(self, call: _Call) -> None:
        with self._lock:
            if not call.ended:
                self._calls.add(call)

    def discard(self, call: _Call) -> None:
        with self._lock:
            self._calls.discard(call)

    def expect(self, call: _Call, what: str, wait_s: float | None = None) -> None:
        """The call now waits on its client (`what`: "request" or "response") for at most
        `wait_s` (default --idle-timeout-s)."""
        wait_s = self.idle_timeout_s if wait_s is None else wait_s
        with self._lock:
            call.deadline = time.monotonic() + wait_s
            call.wait_s = wait_s
            call.reason = what

    def settle(self, call: _Call) -> None:
        """The client did what `expect` waited for."""
        with self._lock:
            call.deadline = None

    def _loop(self) -> None:
        while not self._stop.wait(WATCHDOG_TICK_S):
            now = time.monotonic()
            due: list[tuple[_Call, str]] = []
            with self._lock:
                for call in self._calls:
                    if call.lifetime_deadline is not None and now >= call.lifetime_deadline:
                        due.append((call, "lifetime"))
                    elif call.deadline is not None and now >= call.deadline:
                        due.append((call, call.reason))
                for call, _ in due:
                    self._calls.discard(call)
            for call, why in due:
                _end(call.context, _message(why, call.wait_s, call.lifetime_deadline is not None))


def _message(why: str, wait_s: float, public: bool) -> str:
    if why == "request":
        if public:
            return (
                f"no request message arrived within {wait_s:g} s (health and reflection "
                "clients send it with the call)"
            )
        return (
            f"no request message arrived within {wait_s:g} s (--idle-timeout-s); "
            "send the request when the call starts"
        )
    if why == "response":
        return (
            f"the client did not take a response message for {wait_s:g} s "
            "(--idle-timeout-s); the call was ended"
        )
    return LIFETIME_OVER


LIFETIME_OVER = "health and reflection calls are ended after --public-call-max-s seconds"


def _end(context: grpc.ServicerContext, message: str) -> None:
    """End a call from another thread with DEADLINE_EXCEEDED and `message`.

    `ServicerContext.abort` only works in the handler's own thread and `cancel()` gives the
    client a bare CANCELLED; grpcio's call object (not public API) cancels with a status, so
    it is used when present (grpcio is pinned in requirements.lock; tests/e2e check what the
    client sees), else the call is cancelled."""
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    if call is not None and hasattr(call, "cancel"):
        call.cancel(grpc.StatusCode.DEADLINE_EXCEEDED.value[0], message)
    else:
        context.cancel()


class CallGuard(grpc.ServerInterceptor):
    """The interceptor (see the module doc). `tenant_service` is the service whose calls need
    a key ("sandboxd.v1.Sandbox"); every other service is public."""

    def __init__(
        self,
        auth: Authenticator,
        limits: GuardLimits,
        tenant_service: str,
        on_refused: OnRefused,
    ) -> None:
        self._auth = auth
        self._limits = limits
        self._prefix = f"/{tenant_service}/"
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}  # tenant -> calls open
        self._public = 0
        self._public_reads = threading.Semaphore(1)  # one public request body read at once
        self.watchdog = Watchdog(limits.idle_timeout_s)

    def tenant_calls(self) -> int:
        """Calls of all tenants open now (the sandboxd_open_calls{kind="tenant"} gauge)."""
        with self._lock:
            return sum(self._open.values())

    def public_calls(self) -> int:
        with self._lock:
            return self._public

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # grpcio answers UNIMPLEMENTED
        method = handler_call_details.method
        if not method.startswith(self._prefix):
            return self._admit_public(handler, method)
        metadata = handler_call_details.invocation_metadata
        try:
            tenant = self._auth.tenant(metadata)
        except Unauthenticated as e:
            return self._refusal(handler, e)
        limit = tenant.max_open_calls or self._limits.max_calls_per_tenant
        with self._lock:
            open_now = self._open.get(tenant.name, 0)
            if open_now < limit:
                self._open[tenant.name] = open_now + 1
        if open_now >= limit:
            return self._refusal(
                handler,
                QuotaExceeded(
                    f"tenant:{tenant.name}:open_calls",
                    f"tenant {tenant.name!r} already has {open_now} calls open on this node, "
                    f"its limit (max_open_calls) is {limit}",
                    1.0,
                ),
            )
        return self._guarded(handler, method, lambda: self._release(tenant.name), None, False)

    # -- admission ----------------------------------------------------------------------------

    def _admit_public(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        with self._lock:
            full = self._public >= self._limits.max_public_calls
            if not full:
                self._public += 1
        if full:
            return self._refusal(
                handler,
                QuotaExceeded(
                    "node:public_calls",
                    f"this node already serves {self._limits.max_public_calls} health and "
                    "reflection calls, its limit (--max-public-calls)",
                    1.0,
                ),
            )
        return self._guarded(
            handler, method, self._release_public, self._limits.public_call_max_s, True
        )

    def _release(self, tenant: str) -> None:
        with self._lock:
            left = self._open[tenant] - 1
            if left:
                self._open[tenant] = left
            else:
                del self._open[tenant]

    def _release_public(self) -> None:
        with self._lock:
            self._public -= 1

    def _refusal(
        self, handler: grpc.RpcMethodHandler[Any, Any], exc: BaseException
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """A handler that answers `exc`'s status without waiting for or reading a request."""
        status = to_status(exc)
        self._on_refused(status.code, exc)

        def refuse(_requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            context.abort_with_status(status)

        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                refuse, response_serializer=handler.response_serializer
            )
        return grpc.stream_unary_rpc_method_handler(
            refuse, response_serializer=handler.response_serializer
        )

    # -- admitted calls -----------------------------------------------------------------------

    def _guarded(
        self,
        handler: grpc.RpcMethodHandler[Any, Any],
        method: str,
        release: Callable[[], None],
        lifetime_s: float | None,
        public: bool,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        watchdog = self.watchdog
        public_reads = self._public_reads

        def begin(context: grpc.ServicerContext) -> _Call:
            call = _Call(context)
            if lifetime_s is not None:
                call.lifetime_deadline = time.monotonic() + lifetime_s

            def end() -> None:
                call.ended = True
                watchdog.discard(call)
                release()

            if context.add_callback(end):
                watchdog.add(call)
            else:
                end()  # the call is over already
            return call

        def read(call: _Call, requests: Iterator[Any]) -> Any:
            """The next request message (StopIteration at the end), timed by the watchdog;
            for a public call one body at a time, arriving soon, and a small one only."""
            if not public:
                watchdog.expect(call, "request")
                try:
                    return next(requests)
                finally:
                    watchdog.settle(call)
            assert call.lifetime_deadline is not None
            if not public_reads.acquire(
                timeout=max(0.0, call.lifetime_deadline - time.monotonic())
            ):
                call.context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, LIFETIME_OVER)
            watchdog.expect(call, "request", PUBLIC_REQUEST_TIMEOUT_S)
            try:
                request = next(requests)
            except BaseException:
                public_reads.release()
                raise
            finally:
                watchdog.settle(call)
            if request is not _TOO_LARGE:
                public_reads.release()
                return request
            # The body is still in memory (gRPC's buffer and its copy): the next public body
            # is read once this call is over.
            if not call.context.add_callback(public_reads.release):
                public_reads.release()
            call.context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Received message larger than max (health and reflection requests: "
                f"{MAX_PUBLIC_REQUEST_BYTES} bytes)",
            )

        def first_request(call: _Call, requests: Iterator[Any]) -> Any:
            try:
                return read(call, requests)
            except StopIteration:
                call.context.abort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f'"{method}" requires exactly one request message.',
                )

        def watched_requests(call: _Call, requests: Iterator[Any]) -> Iterator[Any]:
            while True:
                try:
                    request = read(call, requests)
                except StopIteration:
                    return
                yield request

        def response_wait_s(response: Any) -> float:
            """--idle-timeout-s, plus a second per MiB of the message: a client on a slow
            link is not cut off while it downloads a large response."""
            size = response.ByteSize() if hasattr(response, "ByteSize") else 0
            return watchdog.idle_timeout_s + size / MIN_CLIENT_BYTES_PER_S

        def sent(call: _Call, responses: Iterator[Any]) -> Iterator[Any]:
            """Each response message is a wait on the client: grpcio's send blocks (HTTP/2
            flow control) until the client takes it."""
            for response in responses:
                watchdog.expect(call, "response", response_wait_s(response))
                yield response
                watchdog.settle(call)

        options = {
            "request_deserializer": (
                _small_only(handler.request_deserializer)
                if public
                else handler.request_deserializer
            ),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                call = begin(context)
                response = inner_uu(first_request(call, requests), context)
                # settled when the call ends (its callback)
                watchdog.expect(call, "response", response_wait_s(response))
                return response

            return grpc.stream_unary_rpc_method_handler(unary_unary, **options)
        if handler.unary_stream is not None:
            inner_us: Any = handler.unary_stream
            if getattr(inner_us, "experimental_non_blocking", False):
                # grpc_health's Watch: it keeps no thread, messages are sent by whoever
                # changes a status; only its lifetime applies.

                def non_blocking(
                    requests: Iterator[Any],
                    context: grpc.ServicerContext,
                    send_response_callback: Callable[[Any], None],
                ) -> Any:
                    call = begin(context)
                    return inner_us(first_request(call, requests), context, send_response_callback)

                non_blocking.experimental_non_blocking = True  # type: ignore[attr-defined]
                pool = getattr(inner_us, "experimental_thread_pool", None)
                non_blocking.experimental_thread_pool = pool  # type: ignore[attr-defined]
                return grpc.stream_stream_rpc_method_handler(non_blocking, **options)

            def unary_stream(
                requests: Iterator[Any], context: grpc.ServicerContext
            ) -> Iterator[Any]:
                call = begin(context)
                yield from sent(call, inner_us(first_request(call, requests), context))

            return grpc.stream_stream_rpc_method_handler(unary_stream, **options)
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                call = begin(context)
                response = inner_su(watched_requests(call, requests), context)
                watchdog.expect(call, "response", response_wait_s(response))
                return response

            return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
        inner_ss = handler.stream_stream
        assert inner_ss is not None

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            call = begin(context)
            yield from sent(call, inner_ss(watched_requests(call, requests), context))

        return grpc.stream_stream_rpc_method_handler(stream_stream, **options)
