"""The worker's init (PID 1, jail/init.py), attacked from the program it serves.

The init is trusted code with the program's uid: it reaps, reports the program's wait status and
rusage on the exit pipe, and exits, which ends the namespace. A program that could signal it,
read or write its memory, take its descriptors (the exit pipe, the setup socket) or keep it
from reporting would forge its verdict or outlive its limits. Each program here tries, and must
end with its own exact verdict; the init keeps serving (every program exits with a status of
its own choosing after its attack, which only an intact init reports).
"""

from __future__ import annotations

import json
import signal
import textwrap

import pytest
from helpers import run

from sandboxd_pool import Limits, Pool, Runtime, Verdict

LIMITS = Limits(wall_time_ms=10_000)


def test_no_signal_from_inside_reaches_the_init(pool: Pool) -> None:
    """Every signal, by kill and by pidfd, to PID 1 from the program and from a child in a
    session of its own: the kernel drops them (the init has no handler), so the init reports
    the program's own exit status afterwards."""
    code = textwrap.dedent(
        """
        import os, signal, sys
        def attack():
            pidfd = os.pidfd_open(1)
            for sig in range(1, signal.SIGRTMAX + 1):
                os.kill(1, sig)
                signal.pidfd_send_signal(pidfd, sig)
            os.kill(-1, signal.SIGCONT)
        attack()
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            attack()
            os.write(w, b"x")
            os._exit(0)
        os.read(r, 1)
        os.wait()
        state = open("/proc/1/stat").read().rsplit(")", 1)[1].split()[0]
        print("init", state)
        sys.exit(7)
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert (outcome.verdict, outcome.exit_code, outcome.signal) == (
        Verdict.RUNTIME_ERROR,
        7,
        None,
    ), outcome
    assert outcome.stdout == b"init S\n"


def test_no_signal_from_a_javascript_program_reaches_the_init(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        const os = require('os');
        for (const name of Object.keys(os.constants.signals)) {
          try { process.kill(1, name); } catch (e) { console.log(name, e.code); }
        }
        const state = require('fs').readFileSync('/proc/1/stat', 'utf8').split(')').pop().trim()[0];
        console.log('init', state);
        process.exit(9);
        """
    )
    outcome = run(pool, Runtime.JAVASCRIPT, code, limits=LIMITS)
    assert (outcome.verdict, outcome.exit_code) == (Verdict.RUNTIME_ERROR, 9), outcome
    assert outcome.stdout == b"init S\n"


def test_the_inits_descriptors_and_memory_are_out_of_reach(pool: Pool) -> None:
    """Its exit pipe (fd 5) and setup socket (fd 4) would let a program write its own report:
    none of the ways to them through /proc opens."""
    code = textwrap.dedent(
        """
        import errno, json, os
        seen = {}
        def attempt(name, call):
            try:
                call()
                seen[name] = "opened"
            except OSError as e:
                seen[name] = errno.errorcode[e.errno]
        attempt("list fds", lambda: os.listdir("/proc/1/fd"))
        for fd in (4, 5):
            attempt(f"fd {fd} for writing", lambda: os.open(f"/proc/1/fd/{fd}", os.O_WRONLY))
            attempt(f"fd {fd} link", lambda: os.readlink(f"/proc/1/fd/{fd}"))
        attempt("fdinfo", lambda: os.listdir("/proc/1/fdinfo"))
        attempt("mem", lambda: open("/proc/1/mem", "r+b"))
        attempt("environ", lambda: open("/proc/1/environ", "rb").read())
        attempt("cwd", lambda: os.listdir("/proc/1/cwd"))
        attempt("map_files", lambda: os.listdir("/proc/1/map_files"))
        attempt("syscall", lambda: open("/proc/1/syscall").read())
        print(json.dumps(seen))
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert outcome.verdict is Verdict.OK, outcome
    seen = json.loads(outcome.stdout)
    assert seen == {
        "list fds": "EACCES",
        "fd 4 for writing": "EACCES",
        "fd 4 link": "EACCES",
        "fd 5 for writing": "EACCES",
        "fd 5 link": "EACCES",
        "fdinfo": "EACCES",
        "mem": "EACCES",
        "environ": "EACCES",
        "cwd": "EACCES",
        "map_files": "EACCES",
        "syscall": "EACCES",
    }


def test_taking_the_inits_exit_pipe_with_pidfd_getfd_is_blocked(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import ctypes, os
        pidfd = os.pidfd_open(1)
        print("pidfd", flush=True)
        fd = ctypes.CDLL(None, use_errno=True).syscall(438, pidfd, 5, 0)  # pidfd_getfd
        os.write(fd, b"0 0 0 0\\n")
        print("forged")
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert (outcome.verdict, outcome.blocked_syscall) == (Verdict.SYSCALL_BLOCKED, "pidfd_getfd")
    assert outcome.stdout == b"pidfd\n"


def test_a_program_that_stops_itself_times_out(pool: Pool) -> None:
    """The init waits for an exit, not a stop: the program is stopped until its wall time."""
    code = (
        "import os, signal\nprint('stopping', flush=True)\nos.kill(os.getpid(), signal.SIGSTOP)\n"
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=Limits(wall_time_ms=1_000))
    assert (outcome.verdict, outcome.signal) == (Verdict.TIMEOUT, signal.SIGKILL), outcome
    assert outcome.stdout == b"stopping\n"


def test_a_program_that_execs_gets_the_verdict_of_what_it_became(pool: Pool) -> None:
    """After execve the program has a new address space; the old one lives on in its exit
    helper until the namespace ends. The init reports the exit of what it became."""
    code = "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo from sh; exit 4'])\n"
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert (outcome.verdict, outcome.exit_code, outcome.stdout) == (
        Verdict.RUNTIME_ERROR,
        4,
        b"from sh\n",
    ), outcome


def test_children_left_unreaped_and_orphaned_are_reaped_by_the_init(pool: Pool) -> None:
    """Zombies the program never waits for, and orphans that exit after it: the init reaps
    them all and still reports the program's own exit."""
    code = textwrap.dedent(
        """
        import os, sys, time
        for _ in range(20):
            if os.fork() == 0:
                os._exit(0)  # a zombie: the program never waits
        for _ in range(20):
            if os.fork() == 0:
                if os.fork() == 0:
                    time.sleep(0.05)  # an orphan, reparented to the init, exits later
                    os._exit(3)
                os._exit(0)
        print("left them")
        sys.exit(6)
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert (outcome.verdict, outcome.exit_code, outcome.stdout) == (
        Verdict.RUNTIME_ERROR,
        6,
        b"left them\n",
    ), outcome


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
def test_a_child_flooding_output_after_the_program_exits(pool: Pool, fd: int) -> None:
    """A child waits for the program's exit, then writes as fast as it can until the namespace
    ends. The answer comes, with nothing kept past the cap but the program's line and the
    child's bytes. Its verdict is the program's own (OK, exit 0) when the init's report reaches
    the pool first, and OUTPUT_LIMIT when the child's bytes pass the cap first: between the
    program's exit and the report, the init is being scheduled while the child writes, and
    what the execution's processes write until then is the execution's output."""
    code = textwrap.dedent(
        f"""
        import os, sys
        if os.fork() == 0:
            while os.getppid() != 1:
                pass
            while True:
                os.write({fd}, b"late " * 1000)
        os.write({fd}, b"program\\n")
        sys.exit(0)
        """
    )
    cap = 64 * 1024
    outcome = run(pool, Runtime.PYTHON, code, limits=Limits(max_output_bytes=cap))
    if outcome.verdict is Verdict.OK:
        assert (outcome.exit_code, outcome.signal) == (0, None), outcome
    else:
        assert (outcome.verdict, outcome.signal) == (Verdict.OUTPUT_LIMIT, signal.SIGKILL)
    kept, other = (outcome.stdout, outcome.stderr) if fd == 1 else (outcome.stderr, outcome.stdout)
    assert other == b""
    assert len(kept) <= cap
    late = kept.removeprefix(b"program\n")
    assert kept.startswith(b"program\n")
    assert late == (b"late " * cap)[: len(late)]
