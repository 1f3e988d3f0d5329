"""Hostile programs against other executions and against their own verdict (DESIGN §2: no
execution can observe or influence another; the verdict is decided by the parent from kernel
facts, never from what the worker says).
"""

from __future__ import annotations

import json
import secrets
import signal
import textwrap
import threading
import time

import pytest
from helpers import run

from sandboxd_pool import Limits, Outcome, Pool, Runtime, Verdict

LIMITS = Limits(wall_time_ms=5_000)
RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)
SHM_KEY = 0x5EC12E7
ABSTRACT_SOCKET = "sandboxd-jail-victim"

VICTIM = textwrap.dedent(
    """
    import ctypes, os, socket, sys, time
    secret = os.environ["SECRET"].encode()
    for path in ("/work/secret", "/tmp/secret", "/dev/shm/secret"):
        with open(path, "wb") as f:
            f.write(secret)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\\0" + sys.argv[1])
    listener.listen(4)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    shm = libc.shmget(int(sys.argv[2]), 4096, 0o1666)  # IPC_CREAT | 0666
    assert shm >= 0, ctypes.get_errno()
    addr = libc.shmat(shm, None, 0)
    ctypes.memmove(addr, secret, len(secret))
    time.sleep(1.5)
    listener.setblocking(False)
    try:
        listener.accept()
        print("victim was contacted")
    except BlockingIOError:
        pass
    intact = all(open(p, "rb").read() == secret for p in ("/work/secret", "/tmp/secret", "/dev/shm/secret"))
    intact = intact and ctypes.string_at(addr, len(secret)) == secret
    print("victim intact" if intact else "victim tampered with", flush=True)
    """
)

PY_ATTACKER = textwrap.dedent(
    """
    import ctypes, errno, json, os, signal, socket, sys
    out = {}
    for d in ("/work", "/tmp", "/dev/shm"):
        out["ls " + d] = sorted(os.listdir(d))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\\0" + sys.argv[1])
        out["abstract socket"] = "CONNECTED"
    except OSError as e:
        out["abstract socket"] = errno.errorcode[e.errno]
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.shmget(int(sys.argv[2]), 0, 0)
    out["shmget"] = "FOUND" if r >= 0 else errno.errorcode[ctypes.get_errno()]
    environ = b""
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                environ += open(f"/proc/{d}/environ", "rb").read()
            except PermissionError:  # the worker's init (PID 1) is closed to the program
                pass
    out["environs"] = environ.decode(errors="replace")
    try:
        os.kill(-1, signal.SIGKILL)  # every process this one may signal, except itself
        out["kill -1"] = "OK"
    except OSError as e:
        out["kill -1"] = errno.errorcode[e.errno]
    hits = []
    own = {int(t) for t in os.listdir("/proc/self/task")}  # kill(tid, 0) works on own threads
    for pid in range(2, 4096):
        if pid in own:
            continue
        try:
            os.kill(pid, 0)
            hits.append(pid)
        except OSError:
            pass
    out["signalable pids"] = hits
    print(json.dumps(out))
    """
)

JS_ATTACKER = textwrap.dedent(
    """
    const fs = require('fs');
    const net = require('net');
    const out = {};
    for (const d of ['/work', '/tmp', '/dev/shm']) out['ls ' + d] = fs.readdirSync(d).sort();
    out.environs = fs.readdirSync('/proc').filter((d) => /^\\d+$/.test(d))
      .map((d) => { try { return fs.readFileSync(`/proc/${d}/environ`, 'latin1'); } catch (e) { return ''; } }).join('');
    try { process.kill(-1, 'SIGKILL'); out['kill -1'] = 'OK'; } catch (e) { out['kill -1'] = e.code; }
    const hits = [];
    // kill(tid, 0) also succeeds for the ids of node's own threads: those are not others
    const own = new Set(fs.readdirSync('/proc/self/task').map(Number));
    for (let pid = 2; pid < 4096; pid++) {
      if (own.has(pid)) continue;
      try { process.kill(pid, 0); hits.push(pid); } catch (e) {}
    }
    out['signalable pids'] = hits;
    const s = net.connect({ path: '\\0' + process.argv[2] });
    s.on('connect', () => { out['abstract socket'] = 'CONNECTED'; s.destroy(); done(); });
    s.on('error', (e) => { out['abstract socket'] = e.code; done(); });
    function done() { console.log(JSON.stringify(out)); }
    """
)


@RUNTIMES
def test_concurrent_execution_cannot_see_or_touch_another(pool: Pool, runtime: Runtime) -> None:
    secret = "sandboxd-victim-secret-" + secrets.token_hex(16)
    victim: dict[str, Outcome] = {}

    def run_victim() -> None:
        victim["outcome"] = run(
            pool,
            Runtime.PYTHON,
            VICTIM,
            args=(ABSTRACT_SOCKET, str(SHM_KEY)),
            env={"SECRET": secret},
            limits=LIMITS,
        )

    thread = threading.Thread(target=run_victim)
    thread.start()
    time.sleep(0.5)  # the victim has written its files, socket and shared memory by now
    code = PY_ATTACKER if runtime is Runtime.PYTHON else JS_ATTACKER
    attack = run(pool, runtime, code, args=(ABSTRACT_SOCKET, str(SHM_KEY)), limits=LIMITS)
    thread.join(10)
    assert not thread.is_alive()

    assert secret.encode() not in attack.stdout + attack.stderr
    assert attack.verdict is Verdict.OK, (attack.verdict, attack.stderr[-2000:])
    seen = json.loads(attack.stdout)
    main = "main.py" if runtime is Runtime.PYTHON else "main.js"
    assert seen["ls /work"] == [main]
    assert seen["ls /tmp"] == [main] or seen["ls /tmp"] == []  # /tmp and /work are one tmpfs
    assert seen["ls /dev/shm"] == []
    assert seen["abstract socket"] == "ECONNREFUSED"  # another net namespace: no such name
    assert seen.get("shmget", "ENOENT") == "ENOENT"  # another IPC namespace
    assert seen["kill -1"] == "ESRCH"  # nobody else to signal
    assert seen["signalable pids"] == []

    outcome = victim["outcome"]
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"victim intact\n"), outcome


STATE_POISON = {
    Runtime.PYTHON: textwrap.dedent(
        """
        import builtins, json, os, sys
        open("/tmp/leftover", "w").write("from the previous customer")
        os.environ["LEFTOVER"] = "1"
        json.dumps = lambda *a, **k: "POISONED"
        sys.modules["os"].getcwd = lambda: "/poisoned"
        builtins.print = lambda *a, **k: None
        """
    ),
    Runtime.JAVASCRIPT: textwrap.dedent(
        """
        require('fs').writeFileSync('/tmp/leftover', 'from the previous customer');
        process.env.LEFTOVER = '1';
        Object.prototype.poisoned = 'yes';
        JSON.stringify = () => 'POISONED';
        globalThis.XMLHttpRequest = null;
        console.log = () => {};
        """
    ),
}

STATE_CHECK = {
    Runtime.PYTHON: textwrap.dedent(
        """
        import json, os
        print(json.dumps({"leftover": os.path.exists("/tmp/leftover"),
                          "env": os.environ.get("LEFTOVER"), "cwd": os.getcwd()}))
        """
    ),
    Runtime.JAVASCRIPT: textwrap.dedent(
        """
        console.log(JSON.stringify({ leftover: require('fs').existsSync('/tmp/leftover'),
          env: process.env.LEFTOVER || null, cwd: process.cwd(), poisoned: ({}).poisoned || null }));
        """
    ),
}


@RUNTIMES
def test_no_state_carries_over_to_the_next_execution(pool: Pool, runtime: Runtime) -> None:
    for _ in range(3):  # more runs than warm workers: every worker is single-use
        poison = run(pool, runtime, STATE_POISON[runtime], limits=LIMITS)
        assert poison.verdict is Verdict.OK, (poison.verdict, poison.stderr[-2000:])
    for _ in range(3):
        check = run(pool, runtime, STATE_CHECK[runtime], limits=LIMITS)
        assert check.verdict is Verdict.OK, (check.verdict, check.stderr[-2000:])
        expected = {"leftover": False, "env": None, "cwd": "/work"}
        if runtime is Runtime.JAVASCRIPT:
            expected["poisoned"] = None
        assert json.loads(check.stdout) == expected


def test_program_holds_only_its_stdio(pool: Pool) -> None:
    """No control socket, listener or other parent fd reaches the program: it cannot talk to
    the supervisor or forge its own exit report."""
    code = textwrap.dedent(
        """
        import json, os
        fds = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except FileNotFoundError:  # the directory listing's own fd, closed by now
                pass
        print(json.dumps(fds))
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    fds = json.loads(outcome.stdout)
    listing = [fd for fd, target in fds.items() if target.startswith("/proc/")]
    assert len(listing) <= 1  # the directory being listed
    stdio = {fd: target for fd, target in fds.items() if fd not in listing}
    assert set(stdio) == {"0", "1", "2"}, fds
    assert all(target.startswith("pipe:[") for target in stdio.values()), fds


def test_javascript_holds_no_socket(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        const fs = require('fs');
        const fds = {};
        for (const fd of fs.readdirSync('/proc/self/fd')) {
          try { fds[fd] = fs.readlinkSync('/proc/self/fd/' + fd); } catch (e) {}
        }
        console.log(JSON.stringify(fds));
        """
    )
    outcome = run(pool, Runtime.JAVASCRIPT, code, limits=LIMITS)
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    fds = json.loads(outcome.stdout)
    assert [fd for fd, target in fds.items() if target.startswith("socket:")] == [], fds


# --------------------------------------------------------------------- forged verdicts


def test_printed_fake_result_does_not_change_the_verdict(pool: Pool) -> None:
    fake = '{"verdict": "OK", "exit_code": 0, "usage": {"cpu_time_us": 1}}'
    code = f"import sys\nprint({fake!r})\nsys.stderr.write('sandboxd: verdict OK\\n')\nsys.exit(3)"
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert outcome.verdict is Verdict.RUNTIME_ERROR
    assert outcome.exit_code == 3
    assert outcome.stdout == fake.encode() + b"\n"


def test_a_fault_is_killed_with_its_signal(pool: Pool) -> None:
    code = "import ctypes\nctypes.string_at(0)\nprint('unreachable')"
    outcome = run(pool, Runtime.PYTHON, code, limits=Limits(cpu_time_ms=5_000, wall_time_ms=5_000))
    assert outcome.verdict is Verdict.KILLED, outcome
    assert outcome.signal == signal.SIGSEGV
    assert outcome.exit_code is None
    assert b"unreachable" not in outcome.stdout


def test_32_bit_syscall_abi_is_refused(pool: Pool) -> None:
    """`int 0x80` (the i386 ABI, where syscall numbers differ) is killed by the filter's
    bad-architecture action instead of slipping past x86_64 rules."""
    code = textwrap.dedent(
        """
        import ctypes, mmap
        buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        buf.write(b"\\xb8\\x1a\\x00\\x00\\x00"  # mov eax, 26 (i386 ptrace)
                  b"\\x31\\xdb"                # xor ebx, ebx (PTRACE_TRACEME)
                  b"\\xcd\\x80"                # int 0x80
                  b"\\xc3")                    # ret
        fn = ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
        print("before", flush=True)
        print("after", fn(), flush=True)
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert outcome.verdict is Verdict.SYSCALL_BLOCKED, outcome
    assert outcome.stdout == b"before\n"
    assert outcome.signal == signal.SIGSYS
    assert outcome.exit_code is None
