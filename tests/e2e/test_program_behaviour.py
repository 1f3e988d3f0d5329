"""A program behaves as it would outside a sandbox, through every entry point of the daemon.

- It dies of the signals it sends itself (KILLED with that signal): user code is not PID 1.
- Large interleaved output through the write APIs arrives whole and in order on each stream
  (Node's stdout and stderr used to be non-blocking: fs.writeSync failed with EAGAIN).
- Closing its output streams does not switch off its wall-clock limit.
Each through Execute, ExecuteStream and Submit (+ wait).
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable

import pytest

from sandboxd_client import Client, ExecuteResult, Limits, Output, Verdict

EntryPoint = Callable[[Client, str, str, Limits], ExecuteResult]


def via_execute(c: Client, runtime: str, code: str, limits: Limits) -> ExecuteResult:
    return c.execute(runtime, code, limits=limits, timeout_s=60)


def via_stream(c: Client, runtime: str, code: str, limits: Limits) -> ExecuteResult:
    streamed: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    final = None
    for event in c.stream(runtime, code, limits=limits, timeout_s=60):
        if isinstance(event, Output):
            streamed[event.stream].append(event.data)
        elif isinstance(event, ExecuteResult):
            final = event
    assert final is not None
    # The output came as Output events; the final result does not repeat it.
    assert (final.stdout, final.stderr) == (b"", b"")
    return dataclasses.replace(
        final, stdout=b"".join(streamed["stdout"]), stderr=b"".join(streamed["stderr"])
    )


def via_submit(c: Client, runtime: str, code: str, limits: Limits) -> ExecuteResult:
    execution = c.wait(c.submit(runtime, code, limits=limits), timeout_s=60)
    assert execution.result is not None
    return execution.result


ENTRY_POINTS = pytest.mark.parametrize(
    "entry", [via_execute, via_stream, via_submit], ids=["execute", "stream", "submit"]
)

SELF_KILL = {
    "python": "import os, signal\nprint('x', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\nprint('alive')\n",
    "javascript": "console.log('x');\nprocess.kill(process.pid, 'SIGKILL');\nconsole.log('alive');\n",
}


@ENTRY_POINTS
@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_a_program_dies_of_its_own_sigkill(client: Client, entry: EntryPoint, runtime: str) -> None:
    r = entry(client, runtime, SELF_KILL[runtime], Limits(wall_time_ms=10_000))
    assert (r.verdict, r.signal, r.exit_code, r.stdout) == (
        Verdict.KILLED,
        signal.SIGKILL,
        None,
        b"x\n",
    ), r


LINES = 300
INTERLEAVED = {
    "python": f"""
import os, sys
for i in range({LINES}):
    os.write(1, f"o{{i:05d}}".ljust(1023, "o").encode() + b"\\n")
    sys.stderr.write(f"e{{i:05d}}".ljust(1023, "e") + "\\n"); sys.stderr.flush()
""",
    "javascript": f"""
const fs = require('fs');
for (let i = 0; i < {LINES}; i++) {{
  fs.writeSync(1, ('o' + String(i).padStart(5, '0')).padEnd(1023, 'o') + '\\n');
  fs.writeSync(2, ('e' + String(i).padStart(5, '0')).padEnd(1023, 'e') + '\\n');
}}
""",
}


def lines(tag: str) -> bytes:
    return b"".join(f"{tag}{i:05d}".ljust(1023, tag).encode() + b"\n" for i in range(LINES))


@ENTRY_POINTS
@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_interleaved_output_arrives_whole_and_in_order(
    client: Client, entry: EntryPoint, runtime: str
) -> None:
    r = entry(client, runtime, INTERLEAVED[runtime], Limits(wall_time_ms=30_000))
    assert r.verdict is Verdict.OK, (r.verdict, r.stderr[-300:])
    assert (r.stdout, r.stderr) == (lines("o"), lines("e"))


CLOSE_AND_SLEEP = {
    "python": "import os, time\nos.close(1); os.close(2)\ntime.sleep(6)\n",
    "javascript": "const fs = require('fs');\nfs.closeSync(1); fs.closeSync(2);\nsetTimeout(() => {}, 6000);\n",
}


@ENTRY_POINTS
@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_closing_the_outputs_does_not_escape_the_wall_limit(
    client: Client, entry: EntryPoint, runtime: str
) -> None:
    r = entry(client, runtime, CLOSE_AND_SLEEP[runtime], Limits(wall_time_ms=1_000))
    assert (r.verdict, r.signal) == (Verdict.TIMEOUT, signal.SIGKILL), r
    assert 1_000_000 <= r.usage.wall_time_us < 6_000_000
