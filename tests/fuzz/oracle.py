"""What the daemon must answer to a well-formed ExecuteRequest, written from the contract alone:
the comments of proto/sandboxd/v1/sandbox.proto (the admission order, each field's rules, how
a violation names its field) and docs/api.md "Errors" (gRPC's own RESOURCE_EXHAUSTED over the
message limit). Nothing here imports the daemon's or the engine's conversion or validation
code, or their constants: a validation bug must show up as a disagreement, not be computed on
both sides. Every number below is quoted from the proto.

The answer is a status and, for INVALID_ARGUMENT, every field the request breaks: the contract
lets the daemon name any one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandboxd_client.proto import sandbox_pb2 as pb

from .conftest import MAX_MESSAGE_BYTES

# "A request message larger than MAX + 1 MiB is refused by gRPC itself"
TRANSPORT_MARGIN_BYTES = 1024 * 1024
MAX_CODE_BYTES = min(MAX_MESSAGE_BYTES, 16 * 1024 * 1024)  # "at most MAX or 16 MiB"
MAX_ARG_BYTES = 131072  # args, env names and values
MAX_ENV_ENTRIES = 1024
MAX_FILES = 1000
MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255
PAGE_BYTES = 4096
MAX_IDEMPOTENCY_KEY_BYTES = 128
MAX_LABELS = 64
MAX_LABEL_KEY_BYTES = 128
MAX_LABEL_VALUE_BYTES = 1024
MAX_EVENT_DEPTH = 512
MAX_FIELD_NAME_BYTES = 128  # "cut to 125 bytes and '...' appended"

# Limits: (default, built-in ceiling, minimum), from the comments of message Limits. The fuzz
# daemon's tenants configure no defaults or ceilings of their own.
LIMITS = {
    "wall_time_ms": (10_000, 300_000, 1),
    "cpu_time_ms": (10_000, 300_000, 1),
    "memory_bytes": (268_435_456, 4_294_967_296, 67_108_864),
    "max_output_bytes": (1_048_576, 67_108_864, 1),
    "max_processes": (64, 1024, 4),
    "tmpfs_bytes": (67_108_864, 1_073_741_824, 1_048_576),
    "max_output_files": (100, 10_000, 1),
    "max_output_files_bytes": (16_777_216, 67_108_864, 1),
    "max_egress_connections": (16, 1024, 1),
    "max_egress_sent_bytes": (16_777_216, 1_073_741_824, 1),
    "max_egress_received_bytes": (67_108_864, 1_073_741_824, 1),
}
RUNTIMES = {pb.RUNTIME_PYTHON: "python", pb.RUNTIME_JAVASCRIPT: "javascript"}
CODE_FILE = {pb.RUNTIME_PYTHON: "main.py", pb.RUNTIME_JAVASCRIPT: "main.js"}
SCRIPT_MODES = {pb.MODE_UNSPECIFIED, pb.MODE_SCRIPT}


@dataclass(frozen=True)
class Expected:
    status: str  # "OK", "INVALID_ARGUMENT", "PERMISSION_DENIED", "TOO_LARGE"
    fields: frozenset[str] = frozenset()  # INVALID_ARGUMENT: each one the request breaks


def expected(
    msg: pb.ExecuteRequest, allowed_runtimes: frozenset[str], *, submit: bool = False
) -> Expected:
    if msg.ByteSize() > MAX_MESSAGE_BYTES + TRANSPORT_MARGIN_BYTES:
        return Expected("TOO_LARGE")
    if msg.runtime not in RUNTIMES:
        return Expected("INVALID_ARGUMENT", frozenset({"runtime"}))
    if RUNTIMES[msg.runtime] not in allowed_runtimes:
        return Expected("PERMISSION_DENIED")
    broken = _violations(msg, submit=submit)
    if broken:
        return Expected("INVALID_ARGUMENT", frozenset(_named(f) for f in broken))
    return Expected("OK")


def names_a_violation(got: str, want: Expected) -> bool:
    return got in want.fields


def _violations(msg: pb.ExecuteRequest, *, submit: bool) -> list[str]:
    broken: list[str] = []
    if msg.mode not in (*SCRIPT_MODES, pb.MODE_HANDLER):
        broken.append("mode")
    elif msg.mode in SCRIPT_MODES:
        if msg.event:
            broken.append("event")
    elif not _event_ok(msg.event):
        broken.append("event")
    code_bytes = len(msg.code.encode())
    if code_bytes > MAX_CODE_BYTES:  # empty code is a valid program (proto: "May be empty")
        broken.append("code")
    if len(msg.stdin) > MAX_MESSAGE_BYTES:
        broken.append("stdin")
    key_bytes = len(msg.idempotency_key.encode())
    if (msg.idempotency_key and not submit) or key_bytes > MAX_IDEMPOTENCY_KEY_BYTES:
        broken.append("idempotency_key")
    for i, arg in enumerate(msg.args):
        if not _text_ok(arg):
            broken.append(f"args[{i}]")
    if len(msg.env) > MAX_ENV_ENTRIES:
        broken.append("env")
    for name, value in msg.env.items():
        if not name or "=" in name or not _text_ok(name) or not _text_ok(value):
            broken.append(f"env[{name!r}]")
    if len(msg.labels) > MAX_LABELS:
        broken.append("labels")
    for key, value in msg.labels.items():
        key_size = len(key.encode())
        if not 1 <= key_size <= MAX_LABEL_KEY_BYTES or len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            broken.append(f"labels[{key!r}]")
    broken += _file_violations(msg)
    tmpfs_bytes = None
    for name, (default, ceiling, minimum) in LIMITS.items():
        value = min(getattr(msg.limits, name) or default, ceiling)
        if value < minimum:
            broken.append(f"limits.{name}")
        if name == "tmpfs_bytes":
            tmpfs_bytes = value
    assert tmpfs_bytes is not None
    pages = [code_bytes, *(len(f.content) for f in msg.files)]
    if sum(-(-size // PAGE_BYTES) * PAGE_BYTES for size in pages) > tmpfs_bytes:
        broken.append("limits.tmpfs_bytes")
    return broken


def _text_ok(text: str) -> bool:
    return "\x00" not in text and len(text.encode()) <= MAX_ARG_BYTES


def _file_violations(msg: pb.ExecuteRequest) -> list[str]:
    broken: list[str] = []
    if len(msg.files) > MAX_FILES:
        broken.append("files")
    if sum(len(f.content) for f in msg.files) > MAX_MESSAGE_BYTES:
        broken.append("files")
    code_file = CODE_FILE[msg.runtime]
    seen: set[str] = set()
    files: dict[str, str] = {code_file: code_file}  # path without "." components -> as given
    for i, f in enumerate(msg.files):
        path = f.path
        if path in seen:
            broken.append(f"files[{i}].path")
            continue
        seen.add(path)
        field = f"files[{path!r}]"
        parts = path.split("/")
        kept = [p for p in parts if p != "."]
        if (
            not path
            or path.startswith("/")
            or "\x00" in path
            or len(path.encode()) > MAX_PATH_BYTES
            or ".." in parts
            or "" in parts  # "a//b", "a/", and "/x" (already refused)
            or any(len(p.encode()) > MAX_COMPONENT_BYTES for p in parts)
            or not kept  # the work dir itself
        ):
            broken.append(field)
            continue
        plain = "/".join(kept)
        inside_a_file = any("/".join(kept[:n]) in files for n in range(1, len(kept)))
        holds_a_file = any(other.startswith(plain + "/") for other in files)
        if plain in files or inside_a_file or holds_a_file:
            broken.append(field)
            continue
        files[plain] = path
    return broken


def _named(field: str) -> str:
    """The field as a violation names it: cut to 125 bytes + "..." past 128 bytes."""
    data = field.encode()
    if len(data) <= MAX_FIELD_NAME_BYTES:
        return field
    return (data[: MAX_FIELD_NAME_BYTES - 3] + b"...").decode(errors="ignore")


# -- RFC 8259 JSON, written out (not the json module the daemon uses) -------------------------

_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
      (?P<string>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")
    | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    | (?P<literal>true|false|null)
    | (?P<punct>[\[\]{},:])
    )""",
    re.VERBOSE,
)
_TRAILING_SPACE = re.compile(r"[ \t\n\r]*")


def _event_ok(event: bytes) -> bool:
    if len(event) > MAX_MESSAGE_BYTES:
        return False
    if not event:
        return True  # null
    try:
        text = event.decode("utf-8")
    except UnicodeDecodeError:
        return False
    tokens = _tokens(text)
    return tokens is not None and _one_value(tokens)


def _tokens(text: str) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    at = 0
    while True:
        space = _TRAILING_SPACE.match(text, at)
        assert space is not None
        if space.end() == len(text):
            return out
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            return None
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        at = match.end()


def _one_value(tokens: list[tuple[str, str]]) -> bool:
    """tokens are exactly one JSON value, nested at most MAX_EVENT_DEPTH deep."""
    stack: list[str] = []  # "[" or "{" per open container
    expect = "value"  # value | value-or-close | comma-or-close | key | key-or-close | colon
    for kind, text in tokens:
        if expect in ("value", "value-or-close"):
            if text in ("]",) and expect == "value-or-close":
                stack.pop()
                expect = "comma-or-close" if stack else "end"
            elif text in ("[", "{"):
                stack.append(text)
                if len(stack) > MAX_EVENT_DEPTH:
                    return False
                expect = "value-or-close" if text == "[" else "key-or-close"
            elif kind in ("string", "number", "literal"):
                expect = "comma-or-close" if stack else "end"
            else:
                return False
        elif expect == "comma-or-close":
            if text == ",":
                expect = "value" if stack[-1] == "[" else "key"
            elif text == ("]" if stack[-1] == "[" else "}"):
                stack.pop()
                expect = "comma-or-close" if stack else "end"
            else:
                return False
        elif expect in ("key", "key-or-close"):
            if kind == "string":
                expect = "colon"
            elif text == "}" and expect == "key-or-close":
                stack.pop()
                expect = "comma-or-close" if stack else "end"
            else:
                return False
        elif expect == "colon":
            if text != ":":
                return False
            expect = "value"
        else:  # "end": anything after the value
            return False
    return expect == "end"
