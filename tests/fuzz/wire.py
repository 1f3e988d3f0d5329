"""Protobuf wire format by hand, so that a test can send what the protobuf library refuses to
build: invalid UTF-8 in a string field, unknown enum values, duplicated and unknown fields,
wrong wire types, truncated messages.

Field numbers are the ones of proto/sandboxd/v1/sandbox.proto (checked against the generated
descriptors in test_fuzz_wire.py)."""

from __future__ import annotations

VARINT = 0
I64 = 1
LEN = 2
I32 = 5

# ExecuteRequest
RUNTIME, CODE, STDIN, ARGS, ENV, FILES, LIMITS, MODE, EVENT, IDEMPOTENCY_KEY, LABELS = range(1, 12)
# Limits
WALL_TIME_MS, CPU_TIME_MS, MEMORY_BYTES, MAX_OUTPUT_BYTES, MAX_PROCESSES, TMPFS_BYTES = range(1, 7)
# File
FILE_PATH, FILE_CONTENT = 1, 2
# map entries
MAP_KEY, MAP_VALUE = 1, 2
# GetExecutionRequest / CancelExecutionRequest
EXECUTION_ID, WAIT_MS = 1, 2

RUNTIME_PYTHON = 1
RUNTIME_JAVASCRIPT = 2


def varint(value: int) -> bytes:
    """Base-128 varint; a negative value is encoded as its 64-bit two's complement (10 bytes),
    as protobuf does for a negative int32."""
    if value < 0:
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def uint(field: int, value: int) -> bytes:
    return tag(field, VARINT) + varint(value)


def blob(field: int, data: bytes) -> bytes:
    return tag(field, LEN) + varint(len(data)) + data


def fixed64(field: int, data: bytes) -> bytes:
    assert len(data) == 8
    return tag(field, I64) + data


def fixed32(field: int, data: bytes) -> bytes:
    assert len(data) == 4
    return tag(field, I32) + data


def map_entry(field: int, key: bytes, value: bytes) -> bytes:
    return blob(field, blob(MAP_KEY, key) + blob(MAP_VALUE, value))


def file(path: bytes, content: bytes = b"") -> bytes:
    return blob(FILES, blob(FILE_PATH, path) + blob(FILE_CONTENT, content))


def execute_request(runtime: int = RUNTIME_PYTHON, code: bytes = b"pass", *extra: bytes) -> bytes:
    """A serialized ExecuteRequest: runtime, code, then any further encoded fields verbatim."""
    return uint(RUNTIME, runtime) + blob(CODE, code) + b"".join(extra)
