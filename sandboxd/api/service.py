"""The `sandboxd.v1.Sandbox` service's handler table: `add_SandboxServicer_to_server`, with
requests that do not decode (decode.py) refused as INVALID_ARGUMENT naming the field, after
the caller is authenticated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc
from sandboxd_pool import InvalidRequest

from ..tenants.auth import Authenticator
from .decode import Undecodable, lenient_deserializer
from .status import translate_errors

SERVICE = pb.DESCRIPTOR.services_by_name["Sandbox"].full_name


OnError = Callable[[grpc.StatusCode, BaseException], None]


def _refuse(
    request: Undecodable, context: grpc.ServicerContext, auth: Authenticator, on_error: OnError
) -> None:
    with translate_errors(context, on_error=on_error):
        auth.tenant(context.invocation_metadata())  # an unknown caller learns nothing more
        raise InvalidRequest(request.field, request.description)


def _unary(method: Any, auth: Authenticator, on_error: OnError) -> Any:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            _refuse(request, context, auth, on_error)
        return method(request, context)

    return handle


def _stream(method: Any, auth: Authenticator, on_error: OnError) -> Any:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if isinstance(request, Undecodable):
            _refuse(request, context, auth, on_error)
        yield from method(request, context)

    return handle


def add_sandbox_service(
    server: grpc.Server, servicer: pb_grpc.SandboxServicer, auth: Authenticator, on_error: OnError
) -> None:
    """`add_SandboxServicer_to_server`, with requests that do not decode refused as above."""
    unary, stream = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
    handlers = {
        "Execute": unary(
            _unary(servicer.Execute, auth, on_error),
            request_deserializer=lenient_deserializer(pb.ExecuteRequest),
            response_serializer=pb.ExecuteResponse.SerializeToString,
        ),
        "ExecuteStream": stream(
            _stream(servicer.ExecuteStream, auth, on_error),
            request_deserializer=lenient_deserializer(pb.ExecuteRequest),
            response_serializer=pb.ExecuteEvent.SerializeToString,
        ),
        "Submit": unary(
            _unary(servicer.Submit, auth, on_error),
            request_deserializer=lenient_deserializer(pb.ExecuteRequest),
            response_serializer=pb.SubmitResponse.SerializeToString,
        ),
        "GetExecution": unary(
            _unary(servicer.GetExecution, auth, on_error),
            request_deserializer=lenient_deserializer(pb.GetExecutionRequest),
            response_serializer=pb.Execution.SerializeToString,
        ),
        "CancelExecution": unary(
            _unary(servicer.CancelExecution, auth, on_error),
            request_deserializer=lenient_deserializer(pb.CancelExecutionRequest),
            response_serializer=pb.CancelExecutionResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
