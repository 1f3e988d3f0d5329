"""gRPC server reflection, both protocols: `grpc.reflection.v1` and `grpc.reflection.v1alpha`.

Newer clients (grpcurl, Postman, grpc-java's and grpc-go's reflection clients) ask for v1
first. grpcio-reflection ships only v1alpha (grpc/grpc#38576), but the two protocols are the
same messages under another package name, field for field, so one servicer answers both: v1
calls are decoded with the v1alpha message classes (the bytes are identical) and routed to the
v1alpha servicer under the v1 method name. The v1 service's own descriptor is made from the
v1alpha file, renamed, and added to the default descriptor pool, so that a client can also
describe `grpc.reflection.v1.ServerReflection` through reflection."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"  # its name in grpc-proto
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
METHOD = "ServerReflectionInfo"


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto: v1alpha's file under the v1 package."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old = f".{proto.package}."
    new = f".{V1_PACKAGE}."

    def renamed(type_name: str) -> str:
        return new + type_name[len(old) :] if type_name.startswith(old) else type_name

    proto.name = V1_FILE
    proto.package = V1_PACKAGE
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = renamed(method.input_type)
            method.output_type = renamed(method.output_type)
    proto.options.Clear()  # v1alpha's are deprecated = true and its own package names
    proto.options.java_multiple_files = True
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    return proto


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindServiceByName(V1_SERVICE_NAME)
        return  # already there (a second server in this process, or a library added it)
    except KeyError:
        pass
    pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def enable(service_names: Iterable[str], server: grpc.Server) -> None:
    """Serve reflection for `service_names` (and for both reflection services)."""
    _add_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.ReflectionServicer(
        (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    )
    for service in (V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME):
        handler = grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {METHOD: handler}),)
        )
