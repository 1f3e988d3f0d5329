"""The `sandboxd.v1.Sandbox` service's handler table: every RPC of the proto, each wrapped once.

The wrapper is the one place where what a servicer method raises becomes a gRPC status
(status.py) and is counted (`count_errors`), for unary and streaming methods alike. It also
refuses requests that do not decode (decode.py) as INVALID_ARGUMENT naming the field, after
the caller is authenticated, instead of grpcio's INTERNAL. The call guard's refusals
(call_guard.py) are counted by the same `count_errors`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc
from sandboxd_pool import InvalidRequest

from ..errors import QuotaExceeded
from ..metrics import Metrics
from ..tenants.auth import Authenticator
from .decode import Undecodable, lenient_deserializer
from .status import translate_errors

_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["Sandbox"]
SERVICE = _DESCRIPTOR.full_name

OnError = Callable[[grpc.StatusCode, BaseException], None]


def count_errors(metrics: Metrics) -> OnError:
    """The metrics of a refused call: sandboxd_rejections_total by status, and for a quota
    its kind (the last part of the QuotaFailure subject)."""

    def count(code: grpc.StatusCode, exc: BaseException) -> None:
        metrics.rejections.labels(code.name).inc()
        if isinstance(exc, QuotaExceeded):
            metrics.quota_rejections.labels(exc.subject.rsplit(":", 1)[-1]).inc()

    return count


def _refuse_undecodable(
    request: Undecodable, context: grpc.ServicerContext, auth: Authenticator
) -> None:
    auth.tenant(context.invocation_metadata())  # an unknown caller learns nothing more
    raise InvalidRequest(request.field, request.description)


def _unary(method: Any, auth: Authenticator, on_error: OnError) -> Any:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        with translate_errors(context, on_error=on_error):
            if isinstance(request, Undecodable):
                _refuse_undecodable(request, context, auth)
            return method(request, context)

    return handle


def _stream(method: Any, auth: Authenticator, on_error: OnError) -> Any:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with translate_errors(context, on_error=on_error):
            if isinstance(request, Undecodable):
                _refuse_undecodable(request, context, auth)
            yield from method(request, context)

    return handle


def add_sandbox_service(
    server: grpc.Server, servicer: pb_grpc.SandboxServicer, auth: Authenticator, on_error: OnError
) -> None:
    """`add_SandboxServicer_to_server`, with each method wrapped as above."""
    handlers = {}
    for method in _DESCRIPTOR.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        implementation = getattr(servicer, method.name)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _stream(implementation, auth, on_error),
                request_deserializer=lenient_deserializer(request_type),
                response_serializer=response_type.SerializeToString,
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _unary(implementation, auth, on_error),
                request_deserializer=lenient_deserializer(request_type),
                response_serializer=response_type.SerializeToString,
            )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
