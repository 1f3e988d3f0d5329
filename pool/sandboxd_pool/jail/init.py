"""The worker's init: PID 1 of its PID namespace is trusted code, and the program is its child.

The kernel ignores every signal that a PID namespace's init sends itself, or that any process
of the namespace sends it, unless the init has a handler: user code running as PID 1 survived
its own `os.kill(os.getpid(), SIGKILL)`, `process.abort()` and `signal.raise_signal()`. So the
confined process (PID 1, every jail step already applied, seccomp loaded) forks the program and
stays behind as a small init:

    - it leads a new session and process group of its own, inside the namespace (setsid), so
      `kill(0, ...)` and the SIGCONT-within-a-session rule reach nothing outside the execution;
    - it resets every signal disposition to the default and becomes non-dumpable: with no
      handler, no signal from inside the namespace reaches it, and no process of the sandbox
      can read or write its memory through /proc (it keeps the same uid as the program);
    - it reaps every process that is reparented to it, and when the program itself exits it
      sends the program's raw wait status (read from the kernel by waitpid) to the zygote on
      the setup socket, then exits, which kills whatever else is left in the namespace;
    - in subuid mode, between the program's exit and the report, it opens the program's out/
      folder to the pool (jail/open_out.py), which has no capability over the sandbox's files.

The program never holds the setup socket nor the seccomp listener. Killing the init from
outside (the pool, at a limit) kills the whole namespace as before.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

from .capabilities import set_dumpable
from .fds import close_all_but

EXIT_PREFIX = b"exit "  # init -> zygote on the setup socket: b"exit <raw wait status>"
# The init's own exit status when it could not report (the zygote then calls it an internal
# error: the program's fate is unknown). Never the program's status: that goes on the socket.
INIT_FAILED_STATUS = 125


def start_program() -> int:
    """setsid, then fork: 0 in the program, the program's pid (in the namespace) in the init."""
    os.setsid()
    return os.fork()


def close_in_program(fds: tuple[int, ...]) -> None:
    """In the program, right after the fork: drop what only the init may hold."""
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def serve_as_init(
    program_pid: int,
    setup_fd: int,
    exit_pipe: int,
    before_report: Callable[[], None] | None = None,
) -> None:
    """Never returns: reap until the program exits, (`before_report`), report its wait
    status, exit.

    The report goes first to the pool, on `exit_pipe` (one line: wait status, user and system
    CPU microseconds, max RSS in KiB, as wait4 gave them), so the answer does not wait for this
    process's own exit and the namespace's teardown; then to the zygote on `setup_fd`."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in signal.valid_signals():
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
        set_dumpable(False)
        close_all_but((setup_fd, exit_pipe))
        os.chdir("/")
        while True:
            try:
                pid, status, usage = os.wait4(-1, 0)
            except ChildProcessError:
                os._exit(0)  # nothing left (cannot happen before the program is reaped)
            if pid == program_pid:
                if before_report is not None:
                    with contextlib.suppress(Exception):
                        before_report()
                line = (
                    f"{status} {int(usage.ru_utime * 1e6)} {int(usage.ru_stime * 1e6)} "
                    f"{usage.ru_maxrss}\n"
                )
                os.write(exit_pipe, line.encode())
                os.write(setup_fd, EXIT_PREFIX + str(status).encode())
                os._exit(0)
    finally:
        os._exit(INIT_FAILED_STATUS)
