"""The program's stdout and stderr behave like the pipes a shell gives a program.

Node's boot opened stdout and stderr as streams, which made libuv set O_NONBLOCK on the open
files the program shares: `fs.writeSync(1, ...)` then failed with EAGAIN once the pipe was full
(~49 KiB) and the program ended RUNTIME_ERROR, where a bare `node` works. Every runtime's fds
0-2 are now blocking, and large interleaved writes through every API arrive whole and in order
on each stream, whether the pool's caller takes the output at the end or as it streams.
"""

from __future__ import annotations

import pytest
from helpers import run

from sandboxd_pool import ExecutionRequest, Limits, Pool, Runtime, Stream, Verdict

LINES = 600  # per stream and per API: ~2.4 MiB in all, far past any pipe buffer

# Each writes, for every API in turn, LINES numbered 1 KiB lines to stdout and to stderr,
# interleaved, then a child process does the same through the inherited descriptors.
PROGRAMS = {
    Runtime.PYTHON: f"""
import os, subprocess, sys
N = {LINES}
def line(tag, api, i):
    return f"{{tag}}{{api}}{{i:05d}}".ljust(1023, tag) + "\\n"
for i in range(N):
    os.write(1, line("o", "a", i).encode()); os.write(2, line("e", "a", i).encode())
for i in range(N):
    sys.stdout.write(line("o", "b", i)); sys.stderr.write(line("e", "b", i))
sys.stdout.flush(); sys.stderr.flush()
for i in range(N):
    print(line("o", "c", i), end=""); print(line("e", "c", i), end="", file=sys.stderr)
sys.stdout.flush(); sys.stderr.flush()
child = "import os\\n" + "".join(
    f"os.write(1, {{line('o', 'd', i).encode()!r}}); os.write(2, {{line('e', 'd', i).encode()!r}})\\n"
    for i in range(N)
)
with open("/tmp/child.py", "w") as f:
    f.write(child)
subprocess.run([sys.executable, "/tmp/child.py"], check=True)
""",
    Runtime.JAVASCRIPT: f"""
const fs = require('fs');
const cp = require('child_process');
const N = {LINES};
const line = (tag, api, i) => (tag + api + String(i).padStart(5, '0')).padEnd(1023, tag) + '\\n';
for (let i = 0; i < N; i++) {{ fs.writeSync(1, line('o', 'a', i)); fs.writeSync(2, line('e', 'a', i)); }}
for (let i = 0; i < N; i++) {{ process.stdout.write(line('o', 'b', i)); process.stderr.write(line('e', 'b', i)); }}
for (let i = 0; i < N; i++) {{ console.log(line('o', 'c', i).slice(0, -1)); console.error(line('e', 'c', i).slice(0, -1)); }}
let script = '';
for (let i = 0; i < N; i++) script += `printf '%s' '${{line('o', 'd', i)}}'; printf '%s' '${{line('e', 'd', i)}}' >&2\\n`;
fs.writeFileSync('/tmp/child.sh', script);
cp.execFileSync('/bin/sh', ['/tmp/child.sh'], {{ stdio: 'inherit' }});
""",
}


def expected(tag: str) -> bytes:
    return b"".join(
        f"{tag}{api}{i:05d}".ljust(1023, tag).encode() + b"\n"
        for api in "abcd"
        for i in range(LINES)
    )


LIMITS = Limits(wall_time_ms=60_000, max_output_bytes=8 << 20)


@pytest.mark.parametrize("runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"])
@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
def test_large_interleaved_writes_arrive_whole_and_in_order(
    pool: Pool, runtime: Runtime, streaming: bool
) -> None:
    chunks: dict[Stream, list[bytes]] = {Stream.STDOUT: [], Stream.STDERR: []}
    outcome = pool.execute(
        ExecutionRequest(runtime=runtime, code=PROGRAMS[runtime], limits=LIMITS),
        on_output=(lambda s, c: chunks[s].append(c)) if streaming else None,
    )
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-500:])
    assert outcome.stdout == expected("o")
    assert outcome.stderr == expected("e")
    if streaming:
        assert b"".join(chunks[Stream.STDOUT]) == outcome.stdout
        assert b"".join(chunks[Stream.STDERR]) == outcome.stderr


@pytest.mark.parametrize(
    ("runtime", "code"),
    [
        (
            Runtime.PYTHON,
            "import fcntl, os\n"
            "print([bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK) for fd in (0, 1, 2)])",
        ),
        (
            Runtime.JAVASCRIPT,
            "const fs = require('fs');\n"
            "console.log(JSON.stringify([0, 1, 2].map((fd) => (parseInt(fs.readFileSync("
            "`/proc/self/fdinfo/${fd}`, 'utf8').match(/flags:\\s+(\\d+)/)[1], 8) & 0o4000) !== 0)));",
        ),
    ],
    ids=["py", "js"],
)
def test_standard_descriptors_are_blocking(pool: Pool, runtime: Runtime, code: str) -> None:
    outcome = run(pool, runtime, code, stdin=b"input")
    expected_out = (
        b"[False, False, False]\n" if runtime is Runtime.PYTHON else b"[false,false,false]\n"
    )
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, expected_out), outcome
