"""Hostile programs against other executions and against their own verdict (SECURITY.md, "Threat model": no
execution can observe or influence another; the verdict is decided by the parent from kernel
facts, never from what the worker says).
"""

from __future__ import annotations

import json
import secrets
import signal
import textwrap
import threading

import pytest
from helpers import SANDBOX_PIDS, run

from sandboxd_pool import ExecutionRequest, Limits, Outcome, Pool, Runtime, Stream, Verdict

LIMITS = Limits(wall_time_ms=5_000)
RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)
# Bounds for "eventually" under a loaded machine, never asserted as speed.
READY_WITHIN_S = 60.0
VICTIM_WALL = Limits(wall_time_ms=120_000)

# The victim holds a secret in every place another execution could look (its work dir, /tmp,
# /dev/shm, an abstract unix socket, a System V shared-memory segment), then proves it: it
# runs the attackers' own probes from inside its namespaces (the positive control: each must
# find the resource) and prints {"ready": ...}. From then on, every 50 ms until the test
# cancels it, it prints {"check": n, ...}: whether everything is still there and intact, and
# whether anything connected to its socket. It never ends by itself.
VICTIM = textwrap.dedent(
    """
    import ctypes, errno, json, os, socket, subprocess, sys, time
    name, key = sys.argv[1], int(sys.argv[2])
    secret = os.environ["SECRET"].encode()
    paths = ("/work/secret", "/tmp/secret", "/dev/shm/secret")
    for path in paths:
        with open(path, "wb") as f:
            f.write(secret)
    # Node (libuv) connects with the whole 108-byte sun_path, NUL-padded: to the kernel that
    # is another abstract name than Python's exact one, so the victim listens on both.
    listeners = []
    for address in ("\\0" + name, ("\\0" + name).ljust(108, "\\0")):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(4)
        listener.setblocking(False)
        listeners.append(listener)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    shm = libc.shmget(key, 4096, 0o1666)  # IPC_CREAT | 0666
    assert shm >= 0, ctypes.get_errno()
    addr = libc.shmat(shm, None, 0)
    ctypes.memmove(addr, secret, len(secret))

    def sysvipc_keys():
        with open("/proc/sysvipc/shm") as f:
            return [int(line.split()[0]) for line in f.read().splitlines()[1:] if line.strip()]

    def bound():
        with open("/proc/net/unix") as f:
            names = [line.split()[-1] for line in f.read().splitlines()[1:]]
        return names.count("@" + name) + names.count("@" + name + "@" * (107 - len(name)))

    control = {}
    for d in ("/work", "/tmp", "/dev/shm"):
        control["ls " + d] = sorted(os.listdir(d))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect("\\0" + name)
        control["abstract socket"] = "CONNECTED"
    except OSError as e:
        control["abstract socket"] = errno.errorcode[e.errno]
    node = subprocess.run(["/usr/bin/node", "-e", sys.argv[3], name], capture_output=True)
    control["node abstract socket"] = node.stdout.decode().strip() or node.stderr.decode()[-300:]
    time.sleep(0.05)
    own = 0
    for listener in listeners:  # the probes' own connections, so they are not counted below
        try:
            listener.accept()[0].close()
            own += 1
        except BlockingIOError:
            pass
    control["accepted own probes"] = own
    probe.close()
    r = libc.shmget(key, 0, 0)
    control["shmget"] = "FOUND" if r == shm else errno.errorcode[ctypes.get_errno()]
    control["sysvipc keys"] = sysvipc_keys()
    print(json.dumps({"ready": control}), flush=True)

    contacted = 0
    n = 0
    while True:
        time.sleep(0.05)
        for listener in listeners:
            while True:
                try:
                    listener.accept()[0].close()
                    contacted += 1
                except BlockingIOError:
                    break
        intact = all(open(p, "rb").read() == secret for p in paths)
        intact = intact and ctypes.string_at(addr, len(secret)) == secret
        print(json.dumps({"check": n, "intact": intact, "contacted": contacted,
                          "bound": bound(), "shm listed": key in sysvipc_keys()}), flush=True)
        n += 1
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
    with open("/proc/sysvipc/shm") as f:
        out["sysvipc keys"] = [int(l.split()[0]) for l in f.read().splitlines()[1:] if l.strip()]
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

# The JavaScript attacker's socket probe; the victim runs it too (`node -e`), as its control.
JS_SOCKET_PROBE = textwrap.dedent(
    """
    function probeSocket(name, done) {
      const s = require('net').connect({ path: '\\0' + name });
      s.on('connect', () => { s.destroy(); done('CONNECTED'); });
      s.on('error', (e) => done(e.code));
    }
    """
)

# Node has no shmget: it reads the System V segments of its IPC namespace from
# /proc/sysvipc/shm, the same file the victim's positive control reads.
JS_ATTACKER = JS_SOCKET_PROBE + textwrap.dedent(
    """
    const fs = require('fs');
    const out = {};
    for (const d of ['/work', '/tmp', '/dev/shm']) out['ls ' + d] = fs.readdirSync(d).sort();
    out['sysvipc keys'] = fs.readFileSync('/proc/sysvipc/shm', 'latin1').split('\\n').slice(1)
      .filter((l) => l.trim()).map((l) => Number(l.trim().split(/\\s+/)[0]));
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
    probeSocket(process.argv[2], (result) => {
      out['abstract socket'] = result;
      console.log(JSON.stringify(out));
    });
    """
)


class VictimOutput:
    """The victim's stdout lines as they arrive (on_output, in the victim's thread)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []
        self.ready = threading.Event()
        self._partial = b""
        self._changed = threading.Condition()

    def __call__(self, stream: Stream, chunk: bytes) -> None:
        if stream is not Stream.STDOUT:
            return
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        with self._changed:
            for line in complete:
                self.lines.append(json.loads(line))
                if "ready" in self.lines[-1]:
                    self.ready.set()
            self._changed.notify_all()

    def wait_for_more_than(self, count: int, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.lines) > count, timeout_s)


@RUNTIMES
def test_concurrent_execution_cannot_see_or_touch_another(pool: Pool, runtime: Runtime) -> None:
    secret = "sandboxd-victim-secret-" + secrets.token_hex(16)
    socket_name = "sandboxd-jail-victim-" + secrets.token_hex(4)
    shm_key = 0x5EC00000 + secrets.randbelow(0x100000)
    output = VictimOutput()
    cancel = threading.Event()
    victim: dict[str, Outcome | BaseException] = {}

    def run_victim() -> None:
        request = ExecutionRequest(
            runtime=Runtime.PYTHON,
            code=VICTIM,
            args=(
                socket_name,
                str(shm_key),
                JS_SOCKET_PROBE + "probeSocket(process.argv[1], console.log);",
            ),
            env={"SECRET": secret},
            limits=VICTIM_WALL,
        )
        try:
            victim["outcome"] = pool.execute(request, cancel=cancel, on_output=output)
        except BaseException as e:  # reported by the main thread
            victim["outcome"] = e

    thread = threading.Thread(target=run_victim)
    thread.start()
    try:
        # The victim's own signal that its secret is in place, not a guess at how long it takes.
        assert output.ready.wait(READY_WITHIN_S), victim.get("outcome", "victim never ready")
        code = PY_ATTACKER if runtime is Runtime.PYTHON else JS_ATTACKER
        attack = run(pool, runtime, code, args=(socket_name, str(shm_key)), limits=LIMITS)
        # One more check by the victim that began after the attack ended: its resources were
        # there for the whole attack.
        after_attack = len(output.lines)
        assert output.wait_for_more_than(after_attack, READY_WITHIN_S), output.lines[-3:]
    finally:
        cancel.set()
        thread.join(READY_WITHIN_S)
    assert not thread.is_alive()

    # The positive control: the probes the attackers use find every resource of the victim
    # from inside the victim's own namespaces.
    assert "ready" in output.lines[0], output.lines[:1]
    assert output.lines[0]["ready"] == {
        "ls /work": ["main.py", "out", "secret"],
        "ls /tmp": ["secret"],
        "ls /dev/shm": ["secret"],
        "abstract socket": "CONNECTED",
        "node abstract socket": "CONNECTED",
        "accepted own probes": 2,
        "shmget": "FOUND",
        "sysvipc keys": [shm_key],
    }
    checks = output.lines[1:]
    assert len(checks) > after_attack - 1
    assert checks == [
        {"check": n, "intact": True, "contacted": 0, "bound": 2, "shm listed": True}
        for n in range(len(checks))
    ], [c for c in checks if not c.get("intact") or c.get("contacted") or not c.get("bound")]

    assert secret.encode() not in attack.stdout + attack.stderr
    assert attack.verdict is Verdict.OK, (attack.verdict, attack.stderr[-2000:])
    seen = json.loads(attack.stdout)
    main = "main.py" if runtime is Runtime.PYTHON else "main.js"
    assert seen["ls /work"] == [main, "out"]
    assert seen["ls /tmp"] == []
    assert seen["ls /dev/shm"] == []
    assert seen["abstract socket"] == "ECONNREFUSED"  # another net namespace: no such name
    assert seen["sysvipc keys"] == []  # another IPC namespace: no segment at all
    if runtime is Runtime.PYTHON:
        assert seen["shmget"] == "ENOENT"
    # Nobody else to signal; a Python program has its own exit helper, which its SIGKILL to
    # every process it may signal kills (and then, unreaped, still answers signal 0).
    helper = SANDBOX_PIDS[runtime][2:]
    assert seen["kill -1"] == ("OK" if helper else "ESRCH")
    assert seen["signalable pids"] == helper

    outcome = victim["outcome"]
    assert isinstance(outcome, Outcome), outcome
    assert outcome.verdict is Verdict.KILLED, outcome  # cancelled by the test, as planned
    assert secret.encode() not in outcome.stdout + outcome.stderr


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
