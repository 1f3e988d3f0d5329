"""Hypothesis strategies for ExecuteRequests with extreme and hostile values (all of them
valid protobuf; tests/fuzz/wire.py makes the ones that are not).

Programs are cheap whatever is drawn: `pass`, a handler returning its event, or random text
behind a line that exits at once (random text either fails to compile, fast, or never runs).
"""

from __future__ import annotations

import json
from typing import TypeVar

from hypothesis import strategies as st

from sandboxd_client.proto import sandbox_pb2 as pb

from .conftest import MAX_MESSAGE_BYTES
from .oracle import LIMITS, MAX_ARG_BYTES, MAX_ENV_ENTRIES, MAX_EVENT_DEPTH, MAX_PATH_BYTES

T = TypeVar("T")
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
EXIT_FIRST = {pb.RUNTIME_PYTHON: "raise SystemExit\n", pb.RUNTIME_JAVASCRIPT: "process.exit(0)\n"}
HANDLERS = {
    pb.RUNTIME_PYTHON: "def handler(event, context):\n    return event\n",
    pb.RUNTIME_JAVASCRIPT: "exports.handler = async (event) => event;\n",
}

# Any text, including NUL, controls, non-BMP characters and newlines (never lone surrogates,
# which a protobuf string cannot hold; wire.py sends invalid UTF-8 instead).
texts = st.text(st.characters(codec="utf-8"), max_size=40)


def mostly(ordinary: st.SearchStrategy[T], hostile: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`ordinary` five times in six: a request has a dozen fields, and one hostile field
    is enough to have it refused, so most fields must be ordinary for the checks behind the
    first one (and the programs themselves) to be reached."""
    return st.integers(0, 5).flatmap(lambda i: hostile if i == 0 else ordinary)


runtimes = mostly(
    st.sampled_from([pb.RUNTIME_PYTHON] * 4 + [pb.RUNTIME_JAVASCRIPT]),
    st.sampled_from([pb.RUNTIME_UNSPECIFIED, 3, 99, -1, 2**31 - 1, -(2**31)]),
)
modes = mostly(
    st.sampled_from([pb.MODE_UNSPECIFIED, pb.MODE_SCRIPT, pb.MODE_HANDLER]),
    st.sampled_from([3, -1, 2**31 - 1]),
)


def _limit_values(name: str, maximum: int) -> st.SearchStrategy[int]:
    _default, ceiling, minimum = LIMITS[name]
    edges = {0, 1, minimum - 1, minimum, ceiling, ceiling + 1, maximum, maximum - 1}
    return mostly(
        st.integers(minimum, minimum * 4),
        st.one_of(
            st.sampled_from(sorted(v for v in edges if 0 <= v <= maximum)),
            st.integers(0, maximum),
        ),
    )


_UINT64_LIMITS = {
    "memory_bytes",
    "max_output_bytes",
    "tmpfs_bytes",
    "max_output_files_bytes",
    "max_egress_sent_bytes",
    "max_egress_received_bytes",
}


@st.composite
def limits(draw: st.DrawFn) -> pb.Limits:
    msg = pb.Limits()
    for name in pb.Limits.DESCRIPTOR.fields_by_name:
        if draw(st.booleans()):
            maximum = UINT64_MAX if name in _UINT64_LIMITS else UINT32_MAX
            setattr(msg, name, draw(_limit_values(name, maximum)))
    return msg


hostile_paths = st.sampled_from(
    [
        "/etc/passwd",
        "/work/x",
        "../x",
        "a/../../x",
        "..",
        ".",
        "./",
        "",
        "a//b",
        "a/",
        "nul\x00.txt",
        "main.py",
        "main.js",
        "./main.py",
        "x/./main.py",
        "main.py/x",
        "a/./b",
        "a",
        "a/b",
        "a/b/c",
        "\n",
        " ",
        "-rf",
        "~",
        "$HOME",
        "é" * 128,
        "n" * 255,
        "n" * 256,
        "d/" * 300 + "f",
        "x" * (MAX_PATH_BYTES + 1),
        "proc/self/mem",
        "dev/null",
        "\u202e.txt",
    ]
)
paths = mostly(
    st.from_regex(r"[a-z0-9_-][a-z0-9_.-]{0,11}(/[a-z0-9_-]{1,12}){0,2}", fullmatch=True),
    st.one_of(hostile_paths, texts, st.lists(texts, min_size=1, max_size=5).map("/".join)),
)
contents = st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 5000]))


@st.composite
def files(draw: st.DrawFn) -> list[pb.File]:
    shape = draw(st.sampled_from(["few", "few", "few", "many", "duplicate", "big"]))
    if shape == "many":  # around max_files (1000)
        count = draw(st.sampled_from([999, 1000, 1001]))
        return [pb.File(path=f"f{i}") for i in range(count)]
    if shape == "big":  # around the payload maximum, in all or in one
        size = draw(st.sampled_from([MAX_MESSAGE_BYTES // 2, MAX_MESSAGE_BYTES + 1]))
        return [pb.File(path="big", content=b"b" * size)]
    chosen = draw(st.lists(st.tuples(paths, contents), max_size=6))
    out = [pb.File(path=p, content=c) for p, c in chosen]
    if shape == "duplicate" and out:
        out.append(pb.File(path=out[0].path))
    return out


@st.composite
def env(draw: st.DrawFn) -> dict[str, str]:
    shape = draw(st.sampled_from(["few", "few", "few", "many", "huge value"]))
    if shape == "many":
        count = draw(st.sampled_from([MAX_ENV_ENTRIES, MAX_ENV_ENTRIES + 1]))
        return {f"K{i}": "v" for i in range(count)}
    if shape == "huge value":
        return {"BIG": "v" * draw(st.sampled_from([MAX_ARG_BYTES, MAX_ARG_BYTES + 1]))}
    keys = st.one_of(texts, st.sampled_from(["", "=", "A=B", "PATH", "LD_PRELOAD", "A\x00"]))
    return draw(st.dictionaries(keys, texts, max_size=5))


@st.composite
def args(draw: st.DrawFn) -> list[str]:
    shape = draw(st.sampled_from(["few", "few", "few", "many", "huge"]))
    if shape == "many":
        return ["a" * 100] * draw(st.integers(100, 1000))
    if shape == "huge":
        return ["a" * draw(st.sampled_from([MAX_ARG_BYTES, MAX_ARG_BYTES + 1]))]
    return draw(st.lists(st.one_of(texts, st.sampled_from(["", "\x00", "--", "$(id)"]))))


@st.composite
def labels(draw: st.DrawFn) -> dict[str, str]:
    shape = draw(st.sampled_from(["none", "none", "few", "many", "long"]))
    if shape == "none":
        return {}
    if shape == "many":
        return {f"l{i}": "v" for i in range(draw(st.sampled_from([64, 65])))}
    if shape == "long":
        return {"k" * draw(st.sampled_from([128, 129])): "v" * draw(st.sampled_from([1024, 1025]))}
    return draw(st.dictionaries(texts, texts, max_size=4))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def code_for(draw: st.DrawFn, runtime: int, mode: int) -> str:
    shape = draw(
        mostly(st.sampled_from(["cheap", "cheap", "random"]), st.sampled_from(["empty", "huge"]))
    )
    if shape == "empty":
        return ""
    if shape == "huge":  # around max_code_bytes (= the payload maximum here)
        return "#" * draw(st.sampled_from([MAX_MESSAGE_BYTES - 100, MAX_MESSAGE_BYTES + 1]))
    if shape == "random":
        return EXIT_FIRST.get(runtime, "") + draw(st.text(max_size=200))
    if mode == pb.MODE_HANDLER:
        return HANDLERS.get(runtime, "pass")
    return "pass" if runtime != pb.RUNTIME_JAVASCRIPT else "0;"


@st.composite
def execute_requests(draw: st.DrawFn) -> pb.ExecuteRequest:
    """An ExecuteRequest where every field may be ordinary, extreme or hostile."""
    runtime = draw(runtimes)
    mode = draw(modes)
    msg = pb.ExecuteRequest(runtime=runtime, mode=mode, code=draw(code_for(runtime, mode)))
    if draw(st.booleans()):
        msg.stdin = draw(mostly(st.binary(max_size=100), st.just(b"s" * (MAX_MESSAGE_BYTES + 1))))
    if draw(st.booleans()):
        msg.args.extend(draw(args()))
    if draw(st.booleans()):
        msg.env.update(draw(env()))
    if draw(st.booleans()):
        msg.files.extend(draw(files()))
    if draw(st.booleans()):
        msg.limits.CopyFrom(draw(limits()))
    hostile_event = st.one_of(
        st.binary(max_size=50),
        st.sampled_from(
            [b"NaN", b"[" * 3000 + b"]" * 3000, b"\xff", b"1e999", b"{", b"[1,]", b'{"a":1,}']
        ),
        st.sampled_from([MAX_EVENT_DEPTH, MAX_EVENT_DEPTH + 1]).map(
            lambda depth: b"[" * depth + b"]" * depth
        ),
    )
    json_event = json_values.map(lambda v: json.dumps(v).encode())
    if mode == pb.MODE_HANDLER:
        msg.event = draw(mostly(json_event, hostile_event))
    else:
        msg.event = draw(mostly(st.just(b""), st.one_of(json_event, hostile_event)))
    msg.idempotency_key = draw(mostly(st.just(""), st.one_of(texts, st.just("k" * 129))))
    msg.labels.update(draw(labels()))
    return msg
