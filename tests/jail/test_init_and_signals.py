"""User code is not PID 1, and a program's signals reach nothing outside its own execution.

The kernel ignores signals that a PID namespace's init sends itself unless it set a handler, so
when user code was PID 1 `os.kill(os.getpid(), SIGKILL)` printed "alive" and ended OK. Each worker
now has a small trusted init as PID 1 (jail/init.py) and the program is its child, in a session
and process group of its own led inside the namespace: a program dies of its own signals exactly
as outside a sandbox (KILLED with that signal), and `kill(0, ...)` cannot reach another
execution (before: every worker shared the pool's session and process group, and one tenant's
`os.kill(0, SIGCONT)` resumed another tenant's stopped process).
"""

from __future__ import annotations

import signal
import threading

import pytest
from helpers import run

from sandboxd_pool import ExecutionRequest, Limits, Mode, Outcome, Pool, Runtime, Stream, Verdict

SELF_SIGNALS = [
    (
        Runtime.PYTHON,
        "import os, signal\nprint('x', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\nprint('alive')",
        signal.SIGKILL,
    ),
    (
        Runtime.PYTHON,
        "import signal\nprint('x', flush=True)\nsignal.raise_signal(signal.SIGTERM)\nprint('alive')",
        signal.SIGTERM,
    ),
    (
        Runtime.PYTHON,
        "import os\nprint('x', flush=True)\nos.abort()\nprint('alive')",
        signal.SIGABRT,
    ),
    (
        Runtime.JAVASCRIPT,
        "console.log('x');\nprocess.kill(process.pid, 'SIGKILL');\nconsole.log('alive');",
        signal.SIGKILL,
    ),
    (
        Runtime.JAVASCRIPT,
        "console.log('x');\nprocess.kill(process.pid, 'SIGTERM');\nsetTimeout(() => console.log('alive'), 500);",
        signal.SIGTERM,
    ),
    (
        Runtime.JAVASCRIPT,
        "console.log('x');\nprocess.abort();\nconsole.log('alive');",
        signal.SIGABRT,
    ),
]


@pytest.mark.parametrize(
    ("runtime", "code", "signum"),
    SELF_SIGNALS,
    ids=["py-kill", "py-raise", "py-abort", "js-kill", "js-term", "js-abort"],
)
def test_a_program_dies_of_its_own_signal(
    pool: Pool, runtime: Runtime, code: str, signum: int
) -> None:
    outcome = run(pool, runtime, code, limits=Limits(wall_time_ms=10_000))
    assert (outcome.verdict, outcome.signal, outcome.exit_code) == (Verdict.KILLED, signum, None), (
        outcome
    )
    assert outcome.stdout == b"x\n"


@pytest.mark.parametrize(
    ("runtime", "code"),
    [
        (
            Runtime.PYTHON,
            "import os\ndef handler(event, context):\n    os.kill(os.getpid(), 9)\n    return 1\n",
        ),
        (
            Runtime.JAVASCRIPT,
            "exports.handler = async () => { process.kill(process.pid, 'SIGKILL'); return 1; };\n",
        ),
    ],
    ids=["py", "js"],
)
def test_a_handler_dies_of_its_own_signal(pool: Pool, runtime: Runtime, code: str) -> None:
    outcome = pool.execute(
        ExecutionRequest(runtime=runtime, code=code, mode=Mode.HANDLER, event=b"{}")
    )
    assert (outcome.verdict, outcome.signal, outcome.result) == (Verdict.KILLED, 9, b""), outcome


def test_the_program_runs_in_a_session_of_its_own_under_a_trusted_init(pool: Pool) -> None:
    code = (
        "import os\n"
        "print(os.getpid(), os.getppid(), os.getpgrp(), os.getsid(0))\n"
        "print(open('/proc/1/status').read().split('Name:')[1].split()[0])\n"
        "try:\n    open('/proc/1/mem', 'rb').read(1)\nexcept OSError as e:\n    print(e.errno)\n"
    )
    outcome = run(pool, Runtime.PYTHON, code)
    assert outcome.verdict is Verdict.OK, outcome
    ids, _name, errno_line = outcome.stdout.decode().splitlines()
    # pid 2, parent the init (1), whose group and session it shares, both led inside.
    assert ids == "2 1 1 1"
    # The init is not dumpable: its memory is out of the program's reach (EACCES).
    assert errno_line == "13"


# A process that stops a child whose SIGCONT handler reports, prints "stopped", waits WAIT_S
# (the attack happens then; {own} is code it runs itself first), and says whether the child ran.
STOPPED_CHILD = """\
import os, signal, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    signal.signal(signal.SIGCONT, lambda *_: os.write(w, b'resumed'))
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(30)
    os._exit(0)
os.close(w)
os.set_blocking(r, False)
while open(f'/proc/{{pid}}/stat').read().rsplit(')', 1)[1].split()[0] != 'T':
    time.sleep(0.01)
print('stopped', flush=True)
{own}
time.sleep({wait_s})
try:
    print(os.read(r, 100).decode() or 'eof')
except BlockingIOError:
    print('untouched')
os.kill(pid, signal.SIGKILL)
"""


def test_kill_zero_reaches_the_programs_own_group(pool: Pool) -> None:
    """The positive control of the next test: the same stopped child, resumed from inside."""
    code = STOPPED_CHILD.format(own="os.kill(0, signal.SIGCONT)", wait_s=0.5)
    outcome = run(pool, Runtime.PYTHON, code, limits=Limits(wall_time_ms=20_000))
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"stopped\nresumed\n"), outcome


def test_kill_zero_cannot_resume_another_executions_stopped_process(pool: Pool) -> None:
    """The attacker sends SIGCONT to its whole process group and to every process it may signal
    while the victim's child is stopped."""
    stopped = threading.Event()
    result: dict[str, Outcome] = {}

    def on_output(stream: Stream, chunk: bytes) -> None:
        if stream is Stream.STDOUT and b"stopped" in chunk:
            stopped.set()

    def run_victim() -> None:
        result["victim"] = pool.execute(
            ExecutionRequest(
                runtime=Runtime.PYTHON,
                code=STOPPED_CHILD.format(own="", wait_s=3),
                limits=Limits(wall_time_ms=20_000),
            ),
            on_output=on_output,
        )

    thread = threading.Thread(target=run_victim)
    thread.start()
    try:
        assert stopped.wait(20), "the victim never stopped its child"
        attack = (
            "import os, signal\n"
            "os.kill(0, signal.SIGCONT)\n"
            "try:\n    os.kill(-1, signal.SIGCONT)\nexcept OSError as e:\n    print(e.errno)\n"
            "print('sent')\n"
        )
        attacker = run(pool, Runtime.PYTHON, attack)
        # kill(-1) finds only the attacker's own exit helper (helpers.SANDBOX_PIDS), so it
        # succeeds; the victim's child stays stopped (below).
        assert (attacker.verdict, attacker.stdout) == (Verdict.OK, b"sent\n"), attacker
    finally:
        thread.join(30)
    victim = result["victim"]
    assert (victim.verdict, victim.stdout) == (Verdict.OK, b"stopped\nuntouched\n"), victim
