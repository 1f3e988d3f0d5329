"""An empty program runs, like `python -c ''` and `node -e ''`: OK, no output. In HANDLER
mode it defines no handler, which is a RUNTIME_ERROR saying so (as any module without one).
The daemon and its clients are checked in tests/e2e/test_empty_program.py."""

from __future__ import annotations

import pytest

from sandboxd_pool import ExecutionRequest, Mode, Pool, Runtime, Verdict

BOTH = pytest.mark.parametrize("runtime", list(Runtime), ids=[r.value for r in Runtime])
NO_HANDLER = {
    Runtime.PYTHON: b"sandboxd: the code defines no function handler(event, context)\n",
    Runtime.JAVASCRIPT: (
        b"sandboxd: the code defines no function exports.handler(event, context)\n"
    ),
}


@BOTH
def test_an_empty_script_is_ok_with_no_output(pool: Pool, runtime: Runtime) -> None:
    outcome = pool.execute(ExecutionRequest(runtime=runtime, code=""))
    assert outcome.verdict is Verdict.OK, outcome
    assert outcome.exit_code == 0 and outcome.signal is None
    assert (outcome.stdout, outcome.stderr, outcome.result) == (b"", b"", b"")


@BOTH
def test_an_empty_handler_program_defines_no_handler(pool: Pool, runtime: Runtime) -> None:
    outcome = pool.execute(ExecutionRequest(runtime=runtime, code="", mode=Mode.HANDLER))
    assert outcome.verdict is Verdict.RUNTIME_ERROR, outcome
    assert outcome.exit_code == 1
    assert (outcome.stdout, outcome.stderr, outcome.result) == (b"", NO_HANDLER[runtime], b"")
