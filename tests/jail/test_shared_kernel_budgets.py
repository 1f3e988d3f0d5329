"""What one execution can do to the kernel state the host and other executions share.

- File watches: the jail's read-only files are the host's own inodes, so an inotify or fanotify
  watch on them reported other tenants' imports, workers booting and host commands. Both are
  refused (ENOSYS) in both runtimes.
- Per-user budgets: a worker's user namespace used to be created while it was still host root,
  so its queued signals, inotify instances and message-queue bytes were charged to host root:
  one tenant queueing signals until EAGAIN made host root's own sigqueue fail, and message
  queues of one tenant made another's mq_open fail. The namespace is now created by the slot's
  own uid, and each worker's RLIMIT_SIGPENDING and RLIMIT_MSGQUEUE are bounded: two concurrent
  executions each get the whole budget, and host root keeps its own.
- Core dumps: where core_pattern pipes to a helper, a crash in a sandbox started that helper as
  host root. RLIMIT_CORE is 1 (the one value at which the kernel skips the pipe helper) and the
  program cannot change it.
- modify_ldt is refused (SYSCALL_BLOCKED): no runtime here needs it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import run

from sandboxd_pool import ExecutionRequest, Limits, Outcome, Pool, Runtime, Stream, Verdict

SIGPENDING = 1024  # the worker's RLIMIT_SIGPENDING (jail/policy.py RlimitPlan)


@pytest.mark.parametrize(
    "code",
    [
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.inotify_init1(0), ctypes.get_errno())\n"
        "print(libc.syscall(253), ctypes.get_errno())\n"  # inotify_init
        "print(libc.fanotify_init(0x200, 0), ctypes.get_errno())\n",  # FAN_REPORT_FID
    ],
)
def test_python_cannot_watch_files(pool: Pool, code: str) -> None:
    outcome = run(pool, Runtime.PYTHON, code)
    assert outcome.verdict is Verdict.OK, outcome
    enosys = f"-1 {38}"
    assert outcome.stdout.decode().splitlines() == [enosys, enosys, enosys]


def test_javascript_cannot_watch_files(pool: Pool) -> None:
    code = (
        "const fs = require('fs');\n"
        "try { fs.watch('/usr/bin'); console.log('watching'); }\n"
        "catch (e) { console.log(e.code); }\n"
    )
    outcome = run(pool, Runtime.JAVASCRIPT, code)
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"ENOSYS\n"), outcome


# Queue real-time signals to itself (blocked, so they stay queued) until the kernel refuses,
# print how many it queued, then hold them for HOLD_S.
QUEUE_SIGNALS = """\
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
sig = signal.SIGRTMIN + 1
signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
class sigval(ctypes.Union):
    _fields_ = [("i", ctypes.c_int), ("p", ctypes.c_void_p)]
n = 0
while libc.sigqueue(os.getpid(), sig, sigval(0)) == 0:
    n += 1
print(n, ctypes.get_errno(), flush=True)
time.sleep(float(sys.argv[1]))
"""


def _run_async(
    pool: Pool, code: str, args: tuple[str, ...], seen: threading.Event
) -> list[Outcome]:
    out: list[Outcome] = []

    def on_output(stream: Stream, chunk: bytes) -> None:
        if stream is Stream.STDOUT:
            seen.set()

    def target() -> None:
        out.append(
            pool.execute(
                ExecutionRequest(
                    runtime=Runtime.PYTHON, code=code, args=args, limits=Limits(wall_time_ms=30_000)
                ),
                on_output=on_output,
            )
        )

    threading.Thread(target=target, daemon=True).start()
    return out


def test_queued_signals_are_charged_to_the_worker_not_to_host_root(pool: Pool) -> None:
    first_ready = threading.Event()
    first = _run_async(pool, QUEUE_SIGNALS, ("3",), first_ready)
    assert first_ready.wait(30), "the first execution never queued its signals"
    # While the first holds its whole budget, another execution gets a whole budget too...
    second = run(pool, Runtime.PYTHON, QUEUE_SIGNALS, args=("0",))
    assert second.verdict is Verdict.OK, second
    assert second.stdout == f"{SIGPENDING} {11}\n".encode()  # EAGAIN at its own limit
    # ... and host root (a process of this test, outside any sandbox) can still queue signals.
    host = subprocess.run(
        [sys.executable, "-c", QUEUE_SIGNALS.replace("while libc", "while n < 100 and libc"), "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert host.stdout == "100 0\n", host
    deadline = time.monotonic() + 30
    while not first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first and first[0].verdict is Verdict.OK, first
    assert first[0].stdout == f"{SIGPENDING} {11}\n".encode()


# Open POSIX message queues of the default size until the kernel refuses; print the count.
OPEN_QUEUES = """\
import ctypes, sys, time
rt = ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.restype = ctypes.c_int
n = 0
while rt.mq_open(f"/q{n}".encode(), 0o102, 0o600, None) >= 0:  # O_CREAT | O_RDWR
    n += 1
print(n, ctypes.get_errno(), flush=True)
time.sleep(float(sys.argv[1]))
"""


def test_message_queue_bytes_are_not_shared_between_executions(pool: Pool) -> None:
    hog_ready = threading.Event()
    hog = _run_async(pool, OPEN_QUEUES, ("3",), hog_ready)
    assert hog_ready.wait(30), "the hog never filled its message queues"
    victim = run(pool, Runtime.PYTHON, OPEN_QUEUES, args=("0",))
    deadline = time.monotonic() + 30
    while not hog and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hog and hog[0].verdict is Verdict.OK, hog
    assert victim.verdict is Verdict.OK, victim
    # Both got the same number of queues of the default size (EMFILE at their own limit).
    count, err = hog[0].stdout.split()
    assert int(count) >= 1 and int(err) == 24, hog[0].stdout
    assert victim.stdout == hog[0].stdout


@pytest.mark.parametrize("runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"])
def test_core_limit_is_one_and_locked(pool: Pool, runtime: Runtime) -> None:
    code = {
        Runtime.PYTHON: (
            "import ctypes, resource\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "print(resource.getrlimit(resource.RLIMIT_CORE))\n"
            "lowered = (ctypes.c_ulong * 2)(0, 1)\n"
            "print(libc.setrlimit(4, lowered), ctypes.get_errno())\n"
            "print(libc.prlimit(0, 4, lowered, None), ctypes.get_errno())\n"
            "print(resource.getrlimit(resource.RLIMIT_CORE))\n"
        ),
        Runtime.JAVASCRIPT: (
            "const line = require('fs').readFileSync('/proc/self/limits', 'utf8')"
            ".split('\\n').find((l) => l.startsWith('Max core file size'));\n"
            "console.log(line.split(/\\s{2,}/).slice(1, 3).join(' '));\n"
        ),
    }[runtime]
    outcome = run(pool, runtime, code)
    assert outcome.verdict is Verdict.OK, outcome
    # Lowering it to 0 (which would start a pipe helper again) is refused: EPERM.
    expected = {
        Runtime.PYTHON: b"(1, 1)\n-1 1\n-1 1\n(1, 1)\n",
        Runtime.JAVASCRIPT: b"1 1\n",
    }[runtime]
    assert outcome.stdout == expected


@pytest.fixture
def core_helper(tmp_path: Path) -> Path:
    """core_pattern pointed at a helper that records that the kernel started it (as root);
    restored afterwards."""
    marker = tmp_path / "helper-ran"
    helper = tmp_path / "core-helper.sh"
    helper.write_text(f'#!/bin/sh\necho "$1" >> {marker}\ncat > /dev/null\n')
    helper.chmod(0o755)
    pattern = Path("/proc/sys/kernel/core_pattern")
    saved = pattern.read_text()
    pattern.write_text(f"|{helper} %p")
    try:
        yield marker
    finally:
        pattern.write_text(saved)


@pytest.mark.parametrize(
    ("runtime", "code"),
    [
        (Runtime.PYTHON, "import os\nos.abort()\n"),
        (Runtime.JAVASCRIPT, "process.abort();\n"),
    ],
    ids=["py", "js"],
)
def test_a_crash_does_not_start_the_core_helper(
    pool: Pool, core_helper: Path, runtime: Runtime, code: str
) -> None:
    # The positive control: a process outside the sandbox that crashes does start it.
    pid = os.fork()
    if pid == 0:
        os.abort()
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while not core_helper.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core_helper.read_text() == f"{pid}\n"
    outcome = run(pool, runtime, code)
    assert (outcome.verdict, outcome.signal) == (Verdict.KILLED, signal.SIGABRT), outcome
    time.sleep(1)  # the helper of the control ran within milliseconds
    assert core_helper.read_text() == f"{pid}\n", "the sandbox's crash started the core helper"


def test_modify_ldt_is_blocked(pool: Pool) -> None:
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nbuf = ctypes.create_string_buffer(16)\n"
        "print('calling', flush=True)\nlibc.syscall(154, 1, buf, 16)\nprint('returned')\n"
    )
    outcome = run(pool, Runtime.PYTHON, code)
    assert (outcome.verdict, outcome.blocked_syscall) == (Verdict.SYSCALL_BLOCKED, "modify_ldt")
    assert outcome.stdout == b"calling\n"


# Take an exclusive flock on each path, print "locked", hold them for sys.argv[1] seconds.
HOLD_LOCKS = """\
import fcntl, os, sys, time
held = []
for path in sys.argv[2:]:
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held.append(fd)
print("locked", flush=True)
time.sleep(float(sys.argv[1]))
"""
# Try the same locks without waiting; print what each gave.
TRY_LOCKS = """\
import errno, fcntl, os, sys
out = []
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode[e.errno])
print(" ".join(out))
"""
SHARED_FILES = ("/usr/bin/node", "/etc/passwd", "/dev/null", "/", "/usr/lib", "/opt/sandboxd")


def test_a_lock_on_a_shared_file_is_invisible_to_other_executions_and_the_host(
    pool: Pool,
) -> None:
    """Locks are per inode, and the jail's read-only files were the host's own inodes (and, for
    Python workers, the template's /etc and /dev): one tenant's flock(LOCK_EX) on /usr/bin/node
    made every other tenant's fail with EWOULDBLOCK. Each worker's files are inodes of its own."""
    holder_ready = threading.Event()
    holder = _run_async(pool, HOLD_LOCKS, ("3", *SHARED_FILES), holder_ready)
    assert holder_ready.wait(30), "the holder never took its locks"
    # The positive control: in the holder's own execution a second open file is refused.
    own = run(
        pool,
        Runtime.PYTHON,
        HOLD_LOCKS.replace('print("locked", flush=True)', "")
        + "\n"
        + TRY_LOCKS.replace("sys.argv[1:]", "sys.argv[2:]"),
        args=("0", "/etc/passwd"),
    )
    assert (own.verdict, own.stdout) == (Verdict.OK, b"EAGAIN\n"), own  # EWOULDBLOCK
    other = run(pool, Runtime.PYTHON, TRY_LOCKS, args=SHARED_FILES)
    assert (other.verdict, other.stdout) == (Verdict.OK, b" ".join([b"ok"] * 6) + b"\n"), other
    with open("/usr/bin/node", "rb") as f:  # and the host is not blocked either
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    deadline = time.monotonic() + 30
    while not holder and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder and holder[0].verdict is Verdict.OK, holder
