"""A HANDLER program writes its result channel itself (the bootstrap runs in its process), so it
can write anything there: `{"forged": tru` used to be an OK result that was not JSON. A result is
accepted only as strict JSON (checked without building it); anything else is RUNTIME_ERROR with
the reason, and no result."""

from __future__ import annotations

import pytest

from sandboxd_pool import ExecutionRequest, Mode, Pool, Runtime, Verdict

FORGE = {
    Runtime.PYTHON: (
        "import os, sys\n"
        "def handler(event, context):\n"
        "    os.write(3, sys.argv[1].encode())\n"
        "    os.close(3)\n"
        "    os._exit(0)\n"
    ),
    Runtime.JAVASCRIPT: (
        "const fs = require('fs');\n"
        "exports.handler = async () => {\n"
        "  fs.writeSync(3, process.argv[2]); fs.closeSync(3); process.exit(0);\n"
        "};\n"
    ),
}
RUNTIMES = pytest.mark.parametrize("runtime", list(FORGE), ids=["py", "js"])


def forge(pool: Pool, runtime: Runtime, text: str):  # type: ignore[no-untyped-def]
    return pool.execute(
        ExecutionRequest(
            runtime=runtime, code=FORGE[runtime], mode=Mode.HANDLER, event=b"{}", args=(text,)
        )
    )


@RUNTIMES
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"forged": tru', "is not valid JSON"),
        ("NaN", "is not valid JSON"),
        ('{"a": 1} {"b": 2}', "is not valid JSON"),
        ("[" * 600 + "]" * 600, "nests arrays and objects deeper than 512"),
    ],
    ids=["truncated", "nan", "two-values", "too-deep"],
)
def test_a_result_that_is_not_strict_json_is_a_runtime_error(
    pool: Pool, runtime: Runtime, text: str, reason: str
) -> None:
    outcome = forge(pool, runtime, text)
    assert (outcome.verdict, outcome.exit_code, outcome.result) == (
        Verdict.RUNTIME_ERROR,
        0,
        b"",
    ), outcome
    assert outcome.stderr.startswith(b"sandboxd: the handler's result "), outcome.stderr
    assert reason.encode() in outcome.stderr, outcome.stderr


@RUNTIMES
def test_a_well_formed_result_written_by_the_program_is_its_own_result(
    pool: Pool, runtime: Runtime
) -> None:
    """The positive control: what a program can always do (return any value) stays OK."""
    outcome = forge(pool, runtime, '{"made": ["by", "hand"]}')
    assert (outcome.verdict, outcome.result) == (Verdict.OK, b'{"made": ["by", "hand"]}'), outcome
