"""The exit helper of a Python worker (python_boot.py), attacked from the program it serves.

Each Python program has a task of its own, PID 3, cloned with CLONE_VM before the request: it
shares the program's memory and nothing else, closes every descriptor, and waits in pause()
with every signal blocked, so that the program's exit does not tear that memory down before
the exit is reported. The program can signal it (same uid), read its /proc entries, and, since
the helper's code and stack are the program's own memory, make it run code of its own: stop it,
rewrite the instruction pause() restarts at, resume it. What it may gain is what a child of its
own has, nothing more: the same credentials, filter and limits, dead with the execution.

What this found: the helper was cloned before the pool set the request's limits on the program,
so it kept the boot rlimits (CPU time unlimited, 1024 processes, RLIMIT_DATA at the ceiling
limit). Without a memory cgroup (the rlimit fallback: subuid mode, containers), a program whose
helper ran its code held 268 MiB under a 64 MiB limit and ended OK. The bootstrap now gives the
helper the program's own limits once the request is read (python_boot._limit_exit_helper).

The hijacking tests run x86-64 machine code (the payloads below); the rest holds anywhere the
helper exists.
"""

from __future__ import annotations

import json
import platform
import secrets
import signal
import textwrap
import time
from collections.abc import Iterator

import psutil
import pytest
from helpers import SANDBOX_PIDS, run

from sandboxd_pool import ExecutionRequest, Limits, Mode, Pool, PoolConfig, Runtime, Verdict

HELPER_PID = 3
X86_64 = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the payloads are x86-64 machine code"
)


@pytest.fixture(scope="module")
def fallback_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """A pool without cgroups (an empty cgroup root): the rlimit fallback of subuid mode and of
    containers, where a process's rlimits are all that bounds its memory, processes and CPU."""
    root = tmp_path_factory.mktemp("no-cgroups")
    config = PoolConfig(
        warm_workers_per_runtime=1, runtimes=(Runtime.PYTHON,), cgroup_root=str(root)
    )
    with Pool(config) as p:
        assert p.cgroups.version == 0
        assert p.wait_until_ready(60), p.health()
        yield p


# ------------------------------------------------------------------------------ what it is

# The helper is cloned before the worker says it is ready; on a busy host it may not have run
# yet when the program starts. Each program first waits until it is in pause().
# A wait that does not end in 5 s exits 1 with what it saw of the helper on stderr (so does
# wait_state below), so that a failure names the helper's state instead of ending TIMEOUT. No
# braces in either: SIGNAL_PROGRAM is a format string.
IN_PAUSE = (
    "import sys as _sys, time as _time\n"
    "def _helper_seen():\n"
    "    try:\n"
    "        stat = open('/proc/3/stat').read().rsplit(')', 1)[1].split()\n"
    "        return 'state %s wchan %s' % (stat[0], open('/proc/3/wchan').read())\n"
    "    except OSError as e:\n"
    "        return repr(e)\n"
    "_deadline = _time.monotonic() + 5\n"
    "while open('/proc/3/wchan').read() != '__do_sys_pause':\n"
    "    if _time.monotonic() > _deadline:\n"
    "        _sys.exit('the helper is not in pause(): ' + _helper_seen())\n"
    "    _time.sleep(0.001)\n"
)

HELPER_SEEN = IN_PAUSE + textwrap.dedent(
    """
    import json, os
    status = dict(line.split(":", 1) for line in open("/proc/3/status"))
    print(json.dumps({
        "state": status["State"].split()[0],
        "wchan": open("/proc/3/wchan").read(),
        "ppid": int(status["PPid"]), "uid": status["Uid"].split(), "tgid": int(status["Tgid"]),
        "fds": os.listdir("/proc/3/fd"),
        "blocked": status["SigBlk"].strip(),
        "caps": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
        "seccomp": status["Seccomp"].strip(),
        "same_memory": os.readlink("/proc/3/exe") == os.readlink("/proc/self/exe")
            and open("/proc/3/maps").read() == open("/proc/self/maps").read(),
    }))
    """
)


def test_the_helper_holds_nothing_and_waits_with_every_signal_blocked(pool: Pool) -> None:
    outcome = run(pool, Runtime.PYTHON, HELPER_SEEN)
    assert outcome.verdict is Verdict.OK, outcome
    seen = json.loads(outcome.stdout)
    assert seen == {
        "state": "S",
        "wchan": "__do_sys_pause",
        "ppid": 2,  # the program's own child: a process of its own, not a thread
        "uid": ["1000"] * 4,
        "tgid": HELPER_PID,
        "fds": [],  # not one of the program's descriptors: no pipe the pool waits on
        # Every signal but SIGKILL, SIGSTOP and glibc's two internal ones (32 and 33, which
        # pthread_sigmask never blocks; their default action kills the helper).
        "blocked": "fffffffe7ffbfeff",
        "caps": "0000000000000000",
        "no_new_privs": "1",
        "seccomp": "2",
        "same_memory": True,
    }


LIMITS_SEEN = textwrap.dedent(
    """
    import json
    def limits(pid):
        lines = open(f"/proc/{pid}/limits").read().splitlines()[1:]
        return {line[:26].strip(): line[26:].split()[:2] for line in lines}
    print(json.dumps({"program": limits("self"), "helper": limits(3)}))
    """
)
REQUEST_LIMITS = Limits(cpu_time_ms=1500, max_processes=9, memory_bytes=96 * 1024 * 1024)


def _limits_of_both(pool: Pool) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    outcome = run(pool, Runtime.PYTHON, LIMITS_SEEN, limits=REQUEST_LIMITS)
    assert outcome.verdict is Verdict.OK, outcome
    seen = json.loads(outcome.stdout)
    return seen["program"], seen["helper"]


def test_the_helper_has_the_programs_own_limits(pool: Pool) -> None:
    """The pool sets the request's rlimits on the program after the helper was cloned; the
    helper must hold the same ones, as a child the program forks would."""
    program, helper = _limits_of_both(pool)
    assert program["Max processes"] == ["9", "9"]
    assert helper == program


def test_the_helper_has_the_programs_own_limits_without_cgroups(fallback_pool: Pool) -> None:
    program, helper = _limits_of_both(fallback_pool)
    assert program["Max processes"] == ["9", "9"]
    assert program["Max data size"] == [str(96 * 1024 * 1024)] * 2
    assert helper == program


# ------------------------------------------------------------------- signalling it, stopping it

# Each ends with the program printing "done" and exiting 3: the verdict and the exit code are
# the program's own, whatever became of its helper.
SIGNALLED = {
    "stopped": "os.kill(3, signal.SIGSTOP)\nwait_state('T')",
    "killed": "os.kill(3, signal.SIGKILL)\nwait_state('Z')",
    "glibc-signal-32": "os.kill(3, 32)\nwait_state('Z')",
    "kill-1": "os.kill(-1, signal.SIGKILL)\nwait_state('Z')",
    "stopped-and-continued": (
        "os.kill(3, signal.SIGSTOP)\nwait_state('T')\nos.kill(3, signal.SIGCONT)\nwait_state('S')"
    ),
}
SIGNAL_PROGRAM = (
    IN_PAUSE
    + """\
import os, signal, sys, time
def wait_state(state):
    deadline = time.monotonic() + 5
    while open('/proc/3/stat').read().rsplit(')', 1)[1].split()[0] != state:
        if time.monotonic() > deadline:
            sys.exit('the helper never reached state %s: %s' % (state, _helper_seen()))
        time.sleep(0.001)
assert os.listdir('/proc/3/fd') == []
{action}
print('done', flush=True)
sys.exit(3)
"""
)


@pytest.mark.parametrize("action", SIGNALLED.values(), ids=SIGNALLED.keys())
def test_a_program_that_signals_its_helper_gets_its_own_verdict(pool: Pool, action: str) -> None:
    code = SIGNAL_PROGRAM.format(action=action)
    outcome = run(pool, Runtime.PYTHON, code, limits=Limits(wall_time_ms=10_000))
    assert (outcome.verdict, outcome.exit_code, outcome.signal) == (
        Verdict.RUNTIME_ERROR,
        3,
        None,
    ), outcome
    assert (outcome.stdout, outcome.stderr) == (b"done\n", b"")


def test_a_handler_whose_helper_is_stopped_returns_its_result(pool: Pool) -> None:
    """The result channel ends with its close: a stopped helper holds no copy of it."""
    code = (
        "import os, signal, time\n"
        "def handler(event, context):\n"
        "    while open('/proc/3/wchan').read() != '__do_sys_pause':\n"
        "        time.sleep(0.001)\n"
        "    os.kill(3, signal.SIGSTOP)\n"
        "    while open('/proc/3/stat').read().rsplit(')', 1)[1].split()[0] != 'T':\n"
        "        time.sleep(0.001)\n"
        "    return {'helper': 'stopped', 'event': event}\n"
    )
    outcome = pool.execute(
        ExecutionRequest(runtime=Runtime.PYTHON, code=code, mode=Mode.HANDLER, event=b'{"n": 1}')
    )
    assert (outcome.verdict, outcome.exit_code) == (Verdict.OK, 0), outcome
    assert json.loads(outcome.result) == {"helper": "stopped", "event": {"n": 1}}


# ------------------------------------------------------------------ making it run the program's code

# The program stops its helper, points the instruction that pause() restarts at (the syscall,
# two bytes before the address /proc/3/syscall gives) at a payload of its own, and resumes it:
# with no handler to run, the kernel restarts the call by returning to that instruction, which
# now jumps to the payload. The payload writes to `result` (the same memory) to say it ran.
HIJACK = IN_PAUSE + textwrap.dedent(
    """
    import ctypes, os, signal, struct, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    def state(pid):
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    after_syscall = int(open("/proc/3/syscall").read().split()[-1], 16)
    result = ctypes.c_long(0)
    name = ctypes.create_string_buffer(sys.argv[2].encode() if len(sys.argv) > 2 else b"", 16)
    payload = bytes.fromhex(sys.argv[1])
    payload = payload.replace(b"RESULT..", struct.pack("<Q", ctypes.addressof(result)))
    payload = payload.replace(b"NAME....", struct.pack("<Q", ctypes.addressof(name)))
    code = libc.mmap(None, 4096, 7, 0x22, -1, 0)  # read, write, execute; private, anonymous
    ctypes.memmove(code, payload, len(payload))
    os.kill(3, signal.SIGSTOP)
    while state(3) != "T":
        time.sleep(0.001)
    assert libc.mprotect((after_syscall - 2) & ~4095, 8192, 7) == 0, ctypes.get_errno()
    jump = b"\\x48\\xb8" + struct.pack("<Q", code) + b"\\xff\\xe0"  # movabs rax, code; jmp rax
    ctypes.memmove(after_syscall - 2, jump, len(jump))
    # Said before the helper runs: a payload the filter kills ends the execution at once.
    print("resumed", flush=True)
    os.kill(3, signal.SIGCONT)
    while result.value == 0:
        time.sleep(0.001)
    """
)

# x86-64 payloads. `RESULT..` and `NAME....` are 8-byte placeholders the program fills in.
STORE_RAX = b"\x48\xbb" + b"RESULT.." + b"\x48\x89\x03"  # movabs rbx, &result; mov [rbx], rax
STORE_ONE = b"\x48\xbb" + b"RESULT.." + bytes.fromhex("48c70301000000")  # ...; mov qword [rbx], 1
PAUSE_FOREVER = bytes.fromhex("b8220000000f05ebf7")  # mov eax, 34 (pause); syscall; jmp back
SPIN_FOREVER = bytes.fromhex("ebfe")  # jmp to itself


def mmap_payload(size: int) -> bytes:
    """result = mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE,
    -1, 0): the address, or -errno; then pause."""
    return (
        bytes.fromhex("4831ff")  # xor rdi, rdi
        + b"\x48\xbe"
        + size.to_bytes(8, "little")  # movabs rsi, size
        + bytes.fromhex("ba03000000")  # mov edx, 3
        + bytes.fromhex("41ba22800000")  # mov r10d, 0x8022
        + bytes.fromhex("49c7c0ffffffff")  # mov r8, -1
        + bytes.fromhex("4d31c9")  # xor r9, r9
        + bytes.fromhex("b8090000000f05")  # mov eax, 9 (mmap); syscall
        + STORE_RAX
        + PAUSE_FOREVER
    )


# ptrace(PTRACE_TRACEME, 0, 0, 0), a call the filter denies; then it would say it ran.
PTRACE_PAYLOAD = bytes.fromhex("b86500000031ff31f631d24531d20f05") + STORE_ONE
# Says it ran, then burns CPU forever.
SPIN_PAYLOAD = STORE_ONE + SPIN_FOREVER
# prctl(PR_SET_NAME, name): its name on the host too; then it opens a file of that name in its
# working directory (/work), says it ran, and appends the name to it forever.
NAMED_WRITER_PAYLOAD = (
    bytes.fromhex("bf0f000000")  # mov edi, 15
    + b"\x48\xbe"
    + b"NAME...."  # movabs rsi, &name
    + bytes.fromhex("b89d0000000f05")  # mov eax, 157 (prctl); syscall
    + b"\x48\xbf"
    + b"NAME...."  # movabs rdi, &name
    + bytes.fromhex("be41040000")  # mov esi, O_WRONLY | O_CREAT | O_APPEND
    + bytes.fromhex("baa4010000")  # mov edx, 0644
    + bytes.fromhex("b8020000000f05")  # mov eax, 2 (open); syscall
    + bytes.fromhex("4989c4")  # mov r12, rax
    + STORE_ONE
    + bytes.fromhex("4c89e7")  # loop: mov rdi, r12
    + b"\x48\xbe"
    + b"NAME...."  # movabs rsi, &name
    + bytes.fromhex("ba0e000000")  # mov edx, 14
    + bytes.fromhex("b8010000000f05")  # mov eax, 1 (write); syscall
    + bytes.fromhex("ebe5")  # jmp loop
)

ERRNO_NAME = (
    "import errno\ndef errno_name(r):\n    return 'mapped' if r > 0 else errno.errorcode[-r]\n"
)
# The same 256 MiB by a child the program forks, for comparison.
CHILD_MMAP = textwrap.dedent(
    """
    import mmap
    r, w = os.pipe()
    if os.fork() == 0:
        try:
            m = mmap.mmap(-1, 256 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            m.write(b"x" * (256 << 20))
            os.write(w, b"mapped")
        except OSError as e:
            os.write(w, errno.errorcode[e.errno].encode())
        os._exit(0)
    print("child", os.read(r, 100).decode())
    """
)


@X86_64
def test_a_hijacked_helper_cannot_map_past_the_memory_limit_without_cgroups(
    fallback_pool: Pool,
) -> None:
    """Without a memory cgroup, RLIMIT_DATA is checked against the calling task's own limit:
    the helper's was the boot one (the ceiling). It held 256 MiB under a 64 MiB limit."""
    code = "import mmap\n" + HIJACK + ERRNO_NAME + "print('helper', errno_name(result.value))\n"
    code += CHILD_MMAP
    outcome = run(
        fallback_pool,
        Runtime.PYTHON,
        code,
        args=(mmap_payload(256 << 20).hex(),),
        limits=Limits(memory_bytes=64 << 20, wall_time_ms=20_000),
    )
    assert outcome.verdict is Verdict.OK, outcome
    assert outcome.stdout == b"resumed\nhelper ENOMEM\nchild ENOMEM\n", outcome


@X86_64
def test_a_hijacked_helper_is_held_to_the_memory_cgroup(pool: Pool) -> None:
    code = HIJACK + "print('helper mapped')\n"
    outcome = run(
        pool,
        Runtime.PYTHON,
        code,
        args=(mmap_payload(256 << 20).hex(),),
        limits=Limits(memory_bytes=64 << 20, wall_time_ms=20_000),
    )
    assert (outcome.verdict, outcome.signal) == (Verdict.MEMORY_LIMIT, signal.SIGKILL), outcome
    assert outcome.stdout == b"resumed\n"


@X86_64
def test_a_hijacked_helper_runs_under_the_programs_filter(pool: Pool) -> None:
    outcome = run(
        pool,
        Runtime.PYTHON,
        HIJACK + "print('the helper came back')\n",
        args=(PTRACE_PAYLOAD.hex(),),
        limits=Limits(wall_time_ms=20_000),
    )
    assert (outcome.verdict, outcome.blocked_syscall) == (Verdict.SYSCALL_BLOCKED, "ptrace"), (
        outcome
    )
    assert outcome.stdout == b"resumed\n"


@X86_64
def test_a_hijacked_helper_burning_cpu_is_the_programs_cpu_time(pool: Pool) -> None:
    """The program sleeps while its helper spins: the cgroup counts the helper's CPU time."""
    outcome = run(
        pool,
        Runtime.PYTHON,
        HIJACK + "print('spinning', flush=True)\ntime.sleep(30)\n",
        args=(SPIN_PAYLOAD.hex(),),
        limits=Limits(cpu_time_ms=1000, wall_time_ms=30_000),
    )
    assert outcome.verdict is Verdict.CPU_TIME_LIMIT, outcome
    assert outcome.stdout == b"resumed\nspinning\n"


def _host_processes_named(name: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == name:
            found.append(proc.pid)
    return found


@X86_64
def test_a_hijacked_helper_dies_with_the_execution(pool: Pool) -> None:
    """The program exits while its helper runs code of its own, writing to a file of /work
    forever: the answer comes, the helper is gone from the host, and the next executions see
    nothing of it."""
    token = f"hj{secrets.token_hex(6)}"  # 14 characters: comm holds 15
    code = HIJACK + "print(open(sys.argv[2]).read(14) == sys.argv[2])\n"
    outcome = run(
        pool,
        Runtime.PYTHON,
        code,
        args=(NAMED_WRITER_PAYLOAD.hex(), token),
        limits=Limits(wall_time_ms=20_000),
    )
    assert (outcome.verdict, outcome.exit_code) == (Verdict.OK, 0), outcome
    assert outcome.stdout == b"resumed\nTrue\n"
    assert (outcome.files, outcome.files_truncated) == ((), False)
    # The namespace dies once its init has reported: the helper with it, within moments.
    deadline = time.monotonic() + 10
    while _host_processes_named(token) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _host_processes_named(token) == []
    probe = (
        "import json, os\n"
        "print(json.dumps([sorted(int(d) for d in os.listdir('/proc') if d.isdigit()),"
        " sorted(os.listdir('/work')), os.listdir('/tmp')]))"
    )
    for _ in range(2):  # both warm workers
        after = run(pool, Runtime.PYTHON, probe)
        assert after.verdict is Verdict.OK, after
        assert json.loads(after.stdout) == [SANDBOX_PIDS[Runtime.PYTHON], ["main.py", "out"], []]
