"""Server reflection on the real daemon, both protocols: `grpc.reflection.v1` (what newer
clients such as grpcurl ask for first); v1alpha (grpcio-reflection's) is tested in
test_lifecycle.py.

The v1 client here is made from what the server describes: the first call is raw bytes on the
v1 method (a list_services request: field 7, empty), the file describing the v1 service is
fetched and checked against grpc-proto's grpc/reflection/v1/reflection.proto (package, field
names and numbers), and its message classes, built in a pool of their own, make the next calls."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2

from sandboxd_client.proto import sandbox_pb2

from .daemon import Daemon

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
SERVICES = {
    "sandboxd.v1.Sandbox",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
# grpc-proto, grpc/reflection/v1/reflection.proto: field name -> number
V1_FIELDS = {
    "ServerReflectionRequest": {
        "host": 1,
        "file_by_filename": 3,
        "file_containing_symbol": 4,
        "file_containing_extension": 5,
        "all_extension_numbers_of_type": 6,
        "list_services": 7,
    },
    "ServerReflectionResponse": {
        "valid_host": 1,
        "original_request": 2,
        "file_descriptor_response": 4,
        "all_extension_numbers_response": 5,
        "list_services_response": 6,
        "error_response": 7,
    },
    "FileDescriptorResponse": {"file_descriptor_proto": 1},
    "ListServiceResponse": {"service": 1},
    "ServiceResponse": {"name": 1},
    "ErrorResponse": {"error_code": 1, "error_message": 2},
}
LIST_SERVICES_WIRE = b"\x3a\x00"  # ServerReflectionRequest{list_services: ""}


def v1_call_raw(address: str, requests: list[bytes]) -> list[bytes]:
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            V1_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        return list(call(iter(requests), timeout=10))


def test_v1_lists_the_services_to_a_raw_request(zero_daemon: Daemon) -> None:
    (raw,) = v1_call_raw(zero_daemon.address, [LIST_SERVICES_WIRE])
    # the response's wire format is v1alpha's (the same fields); decode it with those classes
    response = reflection_pb2.ServerReflectionResponse.FromString(raw)
    assert {s.name for s in response.list_services_response.service} == SERVICES


def _v1_classes(address: str) -> dict[str, Any]:
    """Message classes of grpc.reflection.v1 from the descriptor the server gives for it."""
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.reflection.v1.ServerReflection"
    )
    (raw,) = v1_call_raw(address, [request.SerializeToString()])
    response = reflection_pb2.ServerReflectionResponse.FromString(raw)
    files = response.file_descriptor_response.file_descriptor_proto
    assert len(files) == 1, response
    proto = descriptor_pb2.FileDescriptorProto.FromString(files[0])
    assert (proto.name, proto.package) == (
        "grpc/reflection/v1/reflection.proto",
        "grpc.reflection.v1",
    )
    assert not proto.options.deprecated
    fields = {m.name: {f.name: f.number for f in m.field} for m in proto.message_type}
    assert {name: fields[name] for name in V1_FIELDS} == V1_FIELDS
    (service,) = proto.service
    assert service.name == "ServerReflection"
    (method,) = service.method
    assert (method.name, method.input_type, method.output_type) == (
        "ServerReflectionInfo",
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert method.client_streaming and method.server_streaming
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClassesForFiles([proto.name], pool)


def test_a_v1_client_lists_and_describes(zero_daemon: Daemon) -> None:
    classes = _v1_classes(zero_daemon.address)
    request_cls = classes["grpc.reflection.v1.ServerReflectionRequest"]
    response_cls = classes["grpc.reflection.v1.ServerReflectionResponse"]
    with grpc.insecure_channel(zero_daemon.address) as channel:
        call = channel.stream_stream(
            V1_METHOD,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_cls.FromString,
        )
        listed, described, unknown = list(
            call(
                iter(
                    [
                        request_cls(list_services=""),
                        request_cls(file_containing_symbol="sandboxd.v1.Sandbox"),
                        request_cls(file_containing_symbol="no.such.Service"),
                    ]
                ),
                timeout=10,
            )
        )
    assert {s.name for s in listed.list_services_response.service} == SERVICES
    assert listed.original_request.list_services == ""
    (sandbox,) = [
        descriptor_pb2.FileDescriptorProto.FromString(f)
        for f in described.file_descriptor_response.file_descriptor_proto
        if descriptor_pb2.FileDescriptorProto.FromString(f).package == "sandboxd.v1"
    ]
    assert sandbox.name == sandbox_pb2.DESCRIPTOR.name
    assert "Sandbox" in [s.name for s in sandbox.service]
    assert unknown.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_listed_service_can_be_described(zero_daemon: Daemon, service: str) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
    (raw,) = v1_call_raw(zero_daemon.address, [request.SerializeToString()])
    response = reflection_pb2.ServerReflectionResponse.FromString(raw)
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
