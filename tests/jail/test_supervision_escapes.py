"""A program cannot switch off its own supervision by closing or redirecting its descriptors.

The parent enforces the wall-clock and CPU limits until the worker's process tree is gone, not
while its output streams happen to be open: a program that closes stdout and stderr (and, in
HANDLER mode, its result channel) and then sleeps or burns CPU is still killed at its limit, with
the exact verdict, and the wall time reported is the time to its end, not to its last byte of
output. (Before: such a program ran on unsupervised for up to 10 s, was reported OK with a wall
time of about a millisecond, or INTERNAL_ERROR when it never exited.)
"""

from __future__ import annotations

import signal

import pytest
from helpers import run

from sandboxd_pool import ExecutionRequest, Limits, Mode, Outcome, Pool, Runtime, Verdict

RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)

# Each program detaches from every stream the parent reads, then outlives its wall limit.
CLOSE_AND_SLEEP = {
    Runtime.PYTHON: "import os, time\nos.close(1); os.close(2)\ntime.sleep(6)\n",
    Runtime.JAVASCRIPT: (
        "const fs = require('fs');\nfs.closeSync(1); fs.closeSync(2);\nsetTimeout(() => {}, 6000);\n"
    ),
}
DEVNULL_AND_SLEEP = {
    Runtime.PYTHON: (
        "import os, time\nnull = os.open('/dev/null', os.O_WRONLY)\n"
        "os.dup2(null, 1); os.dup2(null, 2)\ntime.sleep(6)\n"
    ),
    Runtime.JAVASCRIPT: (
        "const fs = require('fs');\nfs.closeSync(1); fs.closeSync(2);\n"
        "fs.openSync('/dev/null', 'w'); fs.openSync('/dev/null', 'w');\n"
        "setTimeout(() => {}, 6000);\n"
    ),
}
NEVER_EXITS = {
    Runtime.PYTHON: "import os, time\nos.close(1); os.close(2)\nwhile True:\n    time.sleep(1)\n",
    Runtime.JAVASCRIPT: (
        "const fs = require('fs');\nfs.closeSync(1); fs.closeSync(2);\nsetInterval(() => {}, 1000);\n"
    ),
}
CLOSE_AND_BURN = {
    Runtime.PYTHON: (
        "import os, time\nos.close(1); os.close(2)\nend = time.monotonic() + 6\n"
        "while time.monotonic() < end:\n    pass\n"
    ),
    Runtime.JAVASCRIPT: (
        "const fs = require('fs');\nfs.closeSync(1); fs.closeSync(2);\n"
        "const end = Date.now() + 6000;\nwhile (Date.now() < end) {}\n"
    ),
}
HANDLER_CLOSES_EVERYTHING = {
    Runtime.PYTHON: (
        "import os, time\n"
        "def handler(event, context):\n"
        "    os.close(1); os.close(2); os.close(3)\n"
        "    time.sleep(6)\n"
        "    return {'forged': True}\n"
    ),
    Runtime.JAVASCRIPT: (
        "const fs = require('fs');\n"
        "exports.handler = async () => {\n"
        "  fs.closeSync(1); fs.closeSync(2); fs.closeSync(3);\n"
        "  await new Promise((r) => setTimeout(r, 6000));\n"
        "  return { forged: true };\n"
        "};\n"
    ),
}

WALL_MS = 1_000
SIX_S_US = 6_000_000


def _killed_at_limit(outcome: Outcome, verdict: Verdict) -> None:
    assert outcome.verdict is verdict, (outcome.verdict, outcome.stderr[-2000:])
    assert (outcome.exit_code, outcome.signal) == (None, signal.SIGKILL)
    assert outcome.stdout == b""


@RUNTIMES
@pytest.mark.parametrize(
    "programs", [CLOSE_AND_SLEEP, DEVNULL_AND_SLEEP], ids=["closed", "devnull"]
)
def test_detached_program_is_killed_at_its_wall_limit(
    pool: Pool, runtime: Runtime, programs: dict[Runtime, str]
) -> None:
    outcome = run(pool, runtime, programs[runtime], limits=Limits(wall_time_ms=WALL_MS))
    _killed_at_limit(outcome, Verdict.TIMEOUT)
    # The true wall time: at least the limit (it ran that long), and it did not run to its
    # own end six seconds later.
    assert WALL_MS * 1000 <= outcome.usage.wall_time_us < SIX_S_US


@RUNTIMES
def test_detached_program_that_never_exits_is_a_timeout(pool: Pool, runtime: Runtime) -> None:
    outcome = run(pool, runtime, NEVER_EXITS[runtime], limits=Limits(wall_time_ms=WALL_MS))
    _killed_at_limit(outcome, Verdict.TIMEOUT)
    assert WALL_MS * 1000 <= outcome.usage.wall_time_us < SIX_S_US


@RUNTIMES
def test_detached_program_is_killed_at_its_cpu_limit(pool: Pool, runtime: Runtime) -> None:
    limits = Limits(wall_time_ms=20_000, cpu_time_ms=500)
    outcome = run(pool, runtime, CLOSE_AND_BURN[runtime], limits=limits)
    _killed_at_limit(outcome, Verdict.CPU_TIME_LIMIT)
    assert outcome.usage.cpu_time_us >= 500_000
    assert outcome.usage.wall_time_us < SIX_S_US


@RUNTIMES
def test_handler_that_closes_its_result_channel_is_still_supervised(
    pool: Pool, runtime: Runtime
) -> None:
    outcome = pool.execute(
        ExecutionRequest(
            runtime=runtime,
            code=HANDLER_CLOSES_EVERYTHING[runtime],
            mode=Mode.HANDLER,
            event=b"{}",
            limits=Limits(wall_time_ms=WALL_MS),
        )
    )
    _killed_at_limit(outcome, Verdict.TIMEOUT)
    assert outcome.result == b""
    assert WALL_MS * 1000 <= outcome.usage.wall_time_us < SIX_S_US
