"""HANDLER mode: Lambda-style `handler(event, context)` / `exports.handler`, with the JSON event
in and the JSON return value out in `Outcome.result` (sent on the worker's control socket).
"""

from __future__ import annotations

import json

import pytest

from sandboxd_pool import (
    ExecutionRequest,
    InvalidRequest,
    Limits,
    Mode,
    Outcome,
    Pool,
    Runtime,
    Verdict,
)

PY = Runtime.PYTHON
JS = Runtime.JAVASCRIPT
BOTH = pytest.mark.parametrize("runtime", [PY, JS], ids=["python", "javascript"])
MiB = 1024 * 1024


def handle(
    pool: Pool,
    runtime: Runtime,
    code: str,
    event: bytes = b"",
    limits: Limits | None = None,
    execution_id: str | None = None,
) -> Outcome:
    request = ExecutionRequest(
        runtime=runtime, code=code, mode=Mode.HANDLER, event=event, limits=limits or Limits()
    )
    return pool.execute(request, execution_id=execution_id)


def ok(outcome: Outcome) -> object:
    assert outcome.verdict is Verdict.OK, outcome
    assert outcome.exit_code == 0, outcome
    return json.loads(outcome.result)


ECHO = {
    PY: (
        "def handler(event, context):\n"
        "    return {'event': event, 'id': context.execution_id,\n"
        "            'mb': context.memory_limit_in_mb,\n"
        "            'left': context.get_remaining_time_in_millis()}\n"
    ),
    JS: (
        "exports.handler = (event, context) => ({event, id: context.executionId,\n"
        "  mb: context.memoryLimitInMB, left: context.getRemainingTimeInMillis()});\n"
    ),
}


@BOTH
def test_event_round_trip_and_context(pool: Pool, runtime: Runtime) -> None:
    event = {"name": "zoë", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    limits = Limits(wall_time_ms=5_000, memory_bytes=128 * MiB)
    outcome = handle(pool, runtime, ECHO[runtime], json.dumps(event).encode(), limits)
    result = ok(outcome)
    assert isinstance(result, dict)
    assert result["event"] == event
    assert result["id"] == outcome.execution_id
    assert result["mb"] == 128
    assert 0 < result["left"] <= 5_000
    assert outcome.stdout == b"" and outcome.stderr == b""


@BOTH
def test_empty_event_is_null(pool: Pool, runtime: Runtime) -> None:
    assert ok(handle(pool, runtime, ECHO[runtime]))["event"] is None  # type: ignore[index]


@BOTH
def test_given_execution_id_reaches_the_context(pool: Pool, runtime: Runtime) -> None:
    outcome = handle(pool, runtime, ECHO[runtime], execution_id="my-id-42")
    assert outcome.execution_id == "my-id-42"
    assert ok(outcome)["id"] == "my-id-42"  # type: ignore[index]


def test_async_js_handler_is_awaited(pool: Pool) -> None:
    code = (
        "exports.handler = async (event) => {\n"
        "  await new Promise((resolve) => setTimeout(resolve, 20));\n"
        "  return {doubled: event.x * 2};\n"
        "};\n"
    )
    assert ok(handle(pool, JS, code, b'{"x": 21}')) == {"doubled": 42}


def test_js_module_exports_handler_and_undefined_is_null(pool: Pool) -> None:
    code = "module.exports = { handler() { console.log('side effect'); } };\n"
    outcome = handle(pool, JS, code)
    assert ok(outcome) is None
    assert outcome.result == b"null"
    assert outcome.stdout == b"side effect\n"


@BOTH
def test_output_still_captured(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: "import sys\ndef handler(e, c):\n    print('out')\n    print('err', file=sys.stderr)\n"
        "    return 1\n",
        JS: "exports.handler = () => { console.log('out'); console.error('err'); return 1; };\n",
    }[runtime]
    outcome = handle(pool, runtime, code)
    assert ok(outcome) == 1
    assert outcome.stdout == b"out\n"
    assert outcome.stderr == b"err\n"


def test_python_main_block_does_not_run(pool: Pool) -> None:
    code = (
        "import sys\n"
        "def handler(event, context):\n"
        "    return __name__\n"
        "if __name__ == '__main__':\n"
        "    print('main block ran')\n"
    )
    outcome = handle(pool, PY, code)
    assert ok(outcome) == "main"
    assert outcome.stdout == b""


def test_js_require_main_is_not_the_module(pool: Pool) -> None:
    code = (
        "if (require.main === module) console.log('main block ran');\n"
        "exports.handler = () => 'loaded';\n"
    )
    outcome = handle(pool, JS, code)
    assert ok(outcome) == "loaded"
    assert outcome.stdout == b""


# -- failures -----------------------------------------------------------------------------


def test_python_exception_is_a_runtime_error_with_the_user_traceback(pool: Pool) -> None:
    code = "def handler(event, context):\n    raise ValueError('bad input')\n"
    outcome = handle(pool, PY, code)
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.exit_code == 1
    assert outcome.result == b""
    assert outcome.stderr == (
        b"Traceback (most recent call last):\n"
        b'  File "/work/main.py", line 2, in handler\n'
        b"    raise ValueError('bad input')\n"
        b"ValueError: bad input\n"
    )


@pytest.mark.parametrize("how", ["throw", "reject"])
def test_js_error_is_a_runtime_error_with_its_stack(pool: Pool, how: str) -> None:
    code = {
        "throw": "exports.handler = () => { throw new TypeError('bad input'); };\n",
        "reject": "exports.handler = async () => { throw new TypeError('bad input'); };\n",
    }[how]
    outcome = handle(pool, JS, code)
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.exit_code == 1
    assert outcome.result == b""
    assert outcome.stderr.startswith(b"TypeError: bad input\n    at "), outcome.stderr
    assert b"/work/main.js:1:" in outcome.stderr
    assert b"/opt/sandboxd" not in outcome.stderr


def test_python_non_serialisable_return(pool: Pool) -> None:
    outcome = handle(pool, PY, "def handler(event, context):\n    return {1, 2}\n")
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.exit_code == 1
    assert outcome.result == b""
    assert outcome.stderr == (
        b"sandboxd: the handler's return value is not JSON-serialisable: "
        b"TypeError: Object of type set is not JSON serializable\n"
    )


def test_python_nan_is_not_json(pool: Pool) -> None:
    outcome = handle(pool, PY, "def handler(event, context):\n    return float('nan')\n")
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.stderr.startswith(
        b"sandboxd: the handler's return value is not JSON-serialisable: ValueError: "
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10n", b"Do not know how to serialize a BigInt"),
        ("(() => { const o = {}; o.self = o; return o; })()", b"Converting circular structure"),
    ],
    ids=["bigint", "circular"],
)
def test_js_non_serialisable_return(pool: Pool, value: str, message: bytes) -> None:
    outcome = handle(pool, JS, f"exports.handler = () => {value};\n")
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.exit_code == 1
    assert outcome.result == b""
    prefix = b"sandboxd: the handler's return value is not JSON-serialisable: "
    assert outcome.stderr.startswith(prefix + message), outcome.stderr
    assert outcome.stderr.endswith(b"\n") and outcome.stderr.count(b"\n") <= 10


@BOTH
def test_missing_handler(pool: Pool, runtime: Runtime) -> None:
    code = {PY: "handler = 42\nprint('loaded')\n", JS: "console.log('loaded');\n"}[runtime]
    outcome = handle(pool, runtime, code)
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.exit_code == 1
    assert outcome.stdout == b"loaded\n"
    assert (
        outcome.stderr
        == {
            PY: b"sandboxd: the code defines no function handler(event, context)\n",
            JS: b"sandboxd: the code defines no function exports.handler(event, context)\n",
        }[runtime]
    )


@BOTH
def test_exit_zero_without_returning(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: "import sys\ndef handler(event, context):\n    print('bye')\n    sys.exit(0)\n",
        JS: "exports.handler = () => { console.log('bye'); process.exit(0); };\n",
    }[runtime]
    outcome = handle(pool, runtime, code)
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.exit_code == 0
    assert outcome.result == b""
    assert outcome.stdout == b"bye\n"
    assert outcome.stderr == b"sandboxd: the handler exited before returning a value\n"


@BOTH
def test_exit_non_zero_in_handler(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: "import sys\ndef handler(event, context):\n    sys.exit(3)\n",
        JS: "exports.handler = () => process.exit(3);\n",
    }[runtime]
    outcome = handle(pool, runtime, code)
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.exit_code == 3
    assert outcome.stderr == b""


@BOTH
def test_large_result_round_trip(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: "def handler(event, context):\n    return 'x' * (5 * 1024 * 1024)\n",
        JS: "exports.handler = () => 'x'.repeat(5 * 1024 * 1024);\n",
    }[runtime]
    outcome = handle(pool, runtime, code, limits=Limits(max_output_bytes=6 * MiB))
    assert ok(outcome) == "x" * (5 * MiB)
    assert len(outcome.result) == 5 * MiB + 2


@BOTH
def test_result_over_the_cap_is_output_limit(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: "def handler(event, context):\n    return 'x' * (2 * 1024 * 1024)\n",
        JS: "exports.handler = () => 'x'.repeat(2 * 1024 * 1024);\n",
    }[runtime]
    outcome = handle(pool, runtime, code, limits=Limits(max_output_bytes=MiB))
    assert outcome.verdict is Verdict.OUTPUT_LIMIT, outcome
    assert outcome.result == b""


@BOTH
def test_timeout_in_handler(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: "import time\ndef handler(event, context):\n    time.sleep(10)\n",
        JS: "exports.handler = () => new Promise(() => setInterval(() => {}, 1000));\n",
    }[runtime]
    outcome = handle(pool, runtime, code, limits=Limits(wall_time_ms=300))
    assert outcome.verdict is Verdict.TIMEOUT
    assert outcome.result == b""


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [b"{", b"\xff\xfe", b"NaN", b"[1, Infinity]", b"{'single': 'quotes'}"],
    ids=["truncated", "not-utf8", "nan", "infinity", "python-repr"],
)
def test_bad_event_is_invalid(pool: Pool, event: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        handle(pool, PY, ECHO[PY], event)
    assert info.value.field == "event"


def test_event_in_script_mode_is_invalid(pool: Pool) -> None:
    request = ExecutionRequest(runtime=PY, code="print(1)", event=b"{}")
    with pytest.raises(InvalidRequest) as info:
        pool.execute(request)
    assert info.value.field == "event"


def test_event_larger_than_max_stdin_is_invalid(pool: Pool) -> None:
    too_big = b'"' + b"x" * pool.config.max_stdin_bytes + b'"'
    with pytest.raises(InvalidRequest) as info:
        handle(pool, PY, ECHO[PY], too_big)
    assert info.value.field == "event"
