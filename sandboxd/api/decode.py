"""Requests that do not decode: which field is at fault.

grpcio's own answer to a request its deserializer rejects is INTERNAL ("Exception
deserializing request!"), which docs/api.md reserves for server bugs, plus an ERROR log with a
traceback, for anyone who can reach the port and before any API key is checked. Found by
tests/fuzz: a string field holding invalid UTF-8 (which the protobuf library refuses to parse)
or a truncated message. So the Sandbox service is registered (service.py) with a deserializer
that never raises: what does not decode becomes an `Undecodable` naming the first field at
fault, and the call is authenticated first and then refused through the one error seam
(status.py).

The field is found by parsing the bytes again with a twin of the proto in which every string
field is `bytes` (and map entries plain messages, since a map key cannot be bytes): when the
twin parses, the culprit is the first string that is not UTF-8 (`args[2]`, `env[0].key`,
`files[1].path`); otherwise the message is malformed as a whole (`request`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from sandboxd_client.proto import sandbox_pb2 as pb

_TWIN_PACKAGE = "sandboxd_decode_twin"
WHOLE_REQUEST = "request"


@dataclass(frozen=True)
class Undecodable:
    """A request body that is not a valid serialized message of its type."""

    field: str
    description: str


def _twin_classes() -> dict[str, type[Message]]:
    """Message classes of sandbox.proto with every string as bytes, by original full name."""
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    original = proto.package
    proto.name = f"{_TWIN_PACKAGE}/{proto.name}"
    proto.package = f"{_TWIN_PACKAGE}.{original}"
    proto.ClearField("service")

    def rewrite(msg: descriptor_pb2.DescriptorProto) -> None:
        msg.options.ClearField("map_entry")
        for f in msg.field:
            if f.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
                f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            if f.type_name.startswith(f".{original}."):
                f.type_name = f".{_TWIN_PACKAGE}{f.type_name}"
        for nested in msg.nested_type:
            rewrite(nested)

    for msg in proto.message_type:
        rewrite(msg)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        f"{original}.{name}": message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{proto.package}.{name}")
        )
        for name in pb.DESCRIPTOR.message_types_by_name
    }


_TWINS = _twin_classes()


def _first_bad_string(desc: Any, twin: Message, prefix: str) -> str | None:
    """Path of the first string field of `desc` whose bytes in `twin` are not UTF-8."""
    for field in desc.fields:
        name = f"{prefix}{field.name}"
        repeated = field.is_repeated
        values = getattr(twin, field.name)
        if not repeated:
            if field.message_type is not None and not twin.HasField(field.name):
                continue
            values = [values]
        for i, value in enumerate(values):
            path = f"{name}[{i}]" if repeated else name
            if field.type == descriptor.FieldDescriptor.TYPE_STRING:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    return path
            elif field.message_type is not None:
                found = _first_bad_string(field.message_type, value, f"{path}.")
                if found is not None:
                    return found
    return None


def diagnose(message_type: type[Message], data: bytes) -> Undecodable:
    """Why `data` does not parse as `message_type` (which already failed to parse it)."""
    desc = message_type.DESCRIPTOR
    twin = _TWINS[desc.full_name]()
    try:
        twin.ParseFromString(data)
    except DecodeError:
        return Undecodable(
            WHOLE_REQUEST,
            f"is not a valid serialized {desc.full_name} (truncated or malformed protobuf)",
        )
    field = _first_bad_string(desc, twin, "")
    if field is None:  # not expected: the twin differs only in what it accepts as text
        return Undecodable(WHOLE_REQUEST, f"does not decode as {desc.full_name}")
    return Undecodable(field, "is not valid UTF-8 (a protobuf string must be)")


def lenient_deserializer(message_type: type[Message]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Message | Undecodable:
        try:
            return message_type.FromString(data)
        except DecodeError:
            return diagnose(message_type, data)

    return deserialize
