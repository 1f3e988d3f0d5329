"""Hostile programs against the privilege boundary (docs/architecture.md, the jail: user namespace with one
unprivileged uid, no capabilities, no_new_privs, seccomp last).

Denied syscalls are made raw (`ctypes.CDLL(None).syscall(nr, ...)` in Python; JavaScript has
no raw syscalls, so it reaches them through a child process — the system perl's `syscall`):
the supervisor must kill the sandbox before the call returns (the program never prints
"after") and name the call from the kernel's notification, not from anything the worker says.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import textwrap
from collections.abc import Iterator

import pytest
from helpers import run

from sandboxd_pool import Limits, Outcome, Pool, PoolConfig, Runtime, Verdict

LIMITS = Limits(wall_time_ms=5_000)
RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)
SANDBOX_UID = 1000

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
SIGCHLD = 17

# name -> (x86_64 number, arguments). Arguments are harmless if a call were ever let through.
BLOCKED: dict[str, tuple[int, tuple[int, ...]]] = {
    "ptrace": (101, (0, 0, 0, 0)),  # PTRACE_TRACEME
    "process_vm_readv": (310, (1, 0, 0, 0, 0, 0)),
    "pidfd_getfd": (438, (0, 0, 0)),
    "mount": (165, (0, 0, 0, 0, 0)),
    "umount2": (166, (0, 0)),
    "pivot_root": (155, (0, 0)),
    "chroot": (161, (0,)),
    "unshare": (272, (CLONE_NEWUSER,)),
    "setns": (308, (0, 0)),
    "open_tree": (428, (-100, 0, 0)),
    "fsopen": (430, (0, 0)),
    "open_by_handle_at": (304, (-100, 0, 0)),
    "bpf": (321, (0, 0, 0)),
    "perf_event_open": (298, (0, 0, -1, -1, 0)),
    "userfaultfd": (323, (0,)),
    "keyctl": (250, (0, 0, 0, 0, 0)),
    "add_key": (248, (0, 0, 0, 0, 0)),
    "request_key": (249, (0, 0, 0, 0)),
    "init_module": (175, (0, 0, 0)),
    "finit_module": (313, (-1, 0, 0)),
    "kexec_load": (246, (0, 0, 0, 0)),
    "reboot": (169, (0, 0, 0, 0)),
    "syslog": (103, (3, 0, 0)),
    "acct": (163, (0,)),
    "swapon": (167, (0, 0)),
    "iopl": (172, (3,)),
    "sethostname": (170, (0, 0)),
    "settimeofday": (164, (0, 0)),
    "personality": (135, (0x0040000,)),  # ADDR_NO_RANDOMIZE
    "clone": (56, (CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0)),  # fork into a new PID namespace
}

PY_SYSCALL = textwrap.dedent(
    """
    import ctypes, sys
    nr, *args = (int(a) for a in sys.argv[1:])
    print("before", flush=True)
    r = ctypes.CDLL(None, use_errno=True).syscall(nr, *(ctypes.c_long(a) for a in args))
    print("after", r, ctypes.get_errno(), flush=True)
    """
)


def _assert_blocked(outcome: Outcome, name: str, stdout: bytes = b"before\n") -> None:
    assert outcome.verdict is Verdict.SYSCALL_BLOCKED, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.blocked_syscall == name
    assert outcome.stdout == stdout  # killed inside the call: "after" never printed
    assert outcome.exit_code is None
    assert outcome.signal == signal.SIGKILL


@pytest.mark.parametrize("name", sorted(BLOCKED))
def test_denied_syscall_kills_the_sandbox_and_is_named(pool: Pool, name: str) -> None:
    nr, args = BLOCKED[name]
    outcome = run(
        pool, Runtime.PYTHON, PY_SYSCALL, args=tuple(map(str, (nr, *args))), limits=LIMITS
    )
    _assert_blocked(outcome, name)


def test_denied_syscall_from_a_thread(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import ctypes, threading, time
        print("before", flush=True)
        t = threading.Thread(target=lambda: ctypes.CDLL(None).syscall(321, 0, 0, 0))
        t.start(); t.join()
        time.sleep(1)
        print("after", flush=True)
        """
    )
    _assert_blocked(run(pool, Runtime.PYTHON, code, limits=LIMITS), "bpf")


def test_denied_syscall_from_a_forked_child_kills_the_whole_sandbox(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import ctypes, os, time
        print("before", flush=True)
        pid = os.fork()
        if pid == 0:
            ctypes.CDLL(None).syscall(165, 0, 0, 0, 0, 0)
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(1)
        print("after: the parent outlived its child's mount()", flush=True)
        """
    )
    _assert_blocked(run(pool, Runtime.PYTHON, code, limits=LIMITS), "mount")


def test_denied_syscall_from_an_execed_program(pool: Pool) -> None:
    """The filter survives execve: a fresh interpreter in the sandbox is still filtered."""
    code = textwrap.dedent(
        """
        import subprocess, sys, time
        print("before", flush=True)
        subprocess.run([sys.executable, "-c",
                        "import ctypes; ctypes.CDLL(None).syscall(298, 0, 0, -1, -1, 0)"])
        time.sleep(1)
        print("after", flush=True)
        """
    )
    _assert_blocked(run(pool, Runtime.PYTHON, code, limits=LIMITS), "perf_event_open")


@pytest.mark.parametrize("name", ["ptrace", "unshare", "keyctl", "bpf", "userfaultfd"])
def test_denied_syscall_from_javascript_through_a_child(pool: Pool, name: str) -> None:
    nr, args = BLOCKED[name]
    call = f'syscall({", ".join(map(str, (nr, *args)))}); print "after\\n";'
    code = textwrap.dedent(
        """
        const cp = require('child_process');
        console.log('before');
        const r = cp.spawnSync('/usr/bin/perl', ['-e', process.argv[2]], { stdio: 'inherit' });
        setTimeout(() => console.log('after', r.status, r.signal), 1000);
        """
    )
    outcome = run(pool, Runtime.JAVASCRIPT, code, args=(call,), limits=LIMITS)
    _assert_blocked(outcome, name)


def test_probed_syscalls_get_enosys_and_fallbacks_work(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import ctypes, errno, json, os, subprocess, threading
        libc = ctypes.CDLL(None, use_errno=True)
        out = {}
        for name, nr, args in [("io_uring_setup", 425, (8, 0)), ("io_uring_enter", 426, (0, 1, 0, 0, 0, 0)),
                               ("io_uring_register", 427, (0, 0, 0, 0)), ("clone3", 435, (0, 0))]:
            r = libc.syscall(nr, *args)
            out[name] = "OK" if r >= 0 else errno.errorcode[ctypes.get_errno()]
        # glibc falls back from clone3 to clone: fork, threads and subprocess still work
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        box = []
        t = threading.Thread(target=box.append, args=(1,)); t.start(); t.join()
        out["thread"] = box
        out["subprocess"] = subprocess.run(["/usr/bin/echo", "hi"], capture_output=True).stdout.decode()
        print(json.dumps(out))
        sys_exit = 0 if out["io_uring_setup"] == "ENOSYS" else 3
        raise SystemExit(sys_exit)
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.exit_code == 0
    assert json.loads(outcome.stdout) == {
        "io_uring_setup": "ENOSYS",
        "io_uring_enter": "ENOSYS",
        "io_uring_register": "ENOSYS",
        "clone3": "ENOSYS",
        "fork": 7,
        "thread": [1],
        "subprocess": "hi\n",
    }


STATUS_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                 "NoNewPrivs", "Seccomp")  # fmt: skip


@RUNTIMES
def test_identity_capabilities_and_no_new_privs(pool: Pool, runtime: Runtime) -> None:
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import json, os, socket, subprocess
            def status(text):
                return {k: v.strip() for k, _, v in (l.partition(":") for l in text.splitlines())}
            out = {
                "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
                "self": status(open("/proc/self/status").read()),
                "child": status(subprocess.run(["/usr/bin/cat", "/proc/self/status"],
                                               capture_output=True, text=True).stdout),
                "uid_map": open("/proc/self/uid_map").read().split(),
                "gid_map": open("/proc/self/gid_map").read().split(),
                "hostname": socket.gethostname(),
            }
            print(json.dumps(out))
            """
        )
    else:
        code = textwrap.dedent(
            """
            const fs = require('fs');
            const cp = require('child_process');
            const status = (text) => Object.fromEntries(text.split('\\n').filter(Boolean)
              .map((l) => { const i = l.indexOf(':'); return [l.slice(0, i), l.slice(i + 1).trim()]; }));
            console.log(JSON.stringify({
              ids: [process.getuid(), process.geteuid(), process.getgid(), process.getegid(), process.getgroups()],
              self: status(fs.readFileSync('/proc/self/status', 'utf8')),
              child: status(cp.execFileSync('/usr/bin/cat', ['/proc/self/status'], { encoding: 'utf8' })),
              uid_map: fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\\s+/),
              gid_map: fs.readFileSync('/proc/self/gid_map', 'utf8').trim().split(/\\s+/),
              hostname: require('os').hostname(),
            }));
            """
        )
    outcome = run(pool, runtime, code, limits=LIMITS)
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    seen = json.loads(outcome.stdout)
    assert seen["ids"][:4] == [SANDBOX_UID] * 4
    assert seen["ids"][4] in ([], [SANDBOX_UID])
    for who in ("self", "child"):
        st = seen[who]
        assert st["Uid"].split() == [str(SANDBOX_UID)] * 4, who
        assert st["Gid"].split() == [str(SANDBOX_UID)] * 4, who
        assert st["Groups"] == "", who
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap], 16) == 0, (who, cap, st[cap])
        assert st["NoNewPrivs"] == "1", who
        assert st["Seccomp"] == "2", who  # filter mode
    # exactly one id mapped: 1000 inside, one unprivileged host id outside
    for key in ("uid_map", "gid_map"):
        inside, outside, count = map(int, seen[key])
        assert (inside, count) == (SANDBOX_UID, 1), key
        assert outside not in (0, SANDBOX_UID), key
    assert seen["hostname"] == "sandbox"


def test_python_cannot_become_root(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import errno, json, os
        def attempt(fn, *a):
            try:
                fn(*a)
                return "OK"
            except OSError as e:
                return errno.errorcode[e.errno]
        def write(path, data):
            with open(path, "w") as f:
                f.write(data)
        out = {
            "setuid(0)": attempt(os.setuid, 0),
            "setgid(0)": attempt(os.setgid, 0),
            "setresuid(0,0,0)": attempt(os.setresuid, 0, 0, 0),
            "setuid(65534)": attempt(os.setuid, 65534),
            "setgroups([0])": attempt(os.setgroups, [0]),
            "write uid_map": attempt(write, "/proc/self/uid_map", "0 0 1\\n"),
            "write setgroups": attempt(write, "/proc/self/setgroups", "allow\\n"),
            "setuid(1000)": attempt(os.setuid, 1000),  # a no-op: the one mapped id
            "uid after": [os.getuid(), os.geteuid()],
        }
        print(json.dumps(out))
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=LIMITS)
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    # uid 0 and 65534 are not mapped in the worker's user namespace: the kernel answers EINVAL
    assert json.loads(outcome.stdout) == {
        "setuid(0)": "EINVAL",
        "setgid(0)": "EINVAL",
        "setresuid(0,0,0)": "EINVAL",
        "setuid(65534)": "EINVAL",
        "setgroups([0])": "EPERM",
        "write uid_map": "EPERM",
        "write setgroups": "EACCES",
        "setuid(1000)": "OK",
        "uid after": [SANDBOX_UID, SANDBOX_UID],
    }


def test_javascript_cannot_become_root(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        const out = {};
        const attempt = (name, fn) => { try { fn(); out[name] = 'OK'; } catch (e) { out[name] = e.code; } };
        attempt('setuid(0)', () => process.setuid(0));
        attempt('seteuid(0)', () => process.seteuid(0));
        attempt('setgid(0)', () => process.setgid(0));
        attempt('setgroups([0])', () => process.setgroups([0]));
        attempt('initgroups(root)', () => process.initgroups('root', 0));
        out['uid after'] = [process.getuid(), process.geteuid()];
        console.log(JSON.stringify(out));
        """
    )
    outcome = run(pool, Runtime.JAVASCRIPT, code, limits=LIMITS)
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    assert json.loads(outcome.stdout) == {
        "setuid(0)": "EINVAL",
        "seteuid(0)": "EINVAL",
        "setgid(0)": "EINVAL",
        "setgroups([0])": "EPERM",
        "initgroups(root)": "EPERM",
        "uid after": [SANDBOX_UID, SANDBOX_UID],
    }


SYSTEM_SETUID = ("/usr/bin/su", "/usr/bin/newgrp", "/usr/bin/passwd")


@pytest.fixture
def setuid_sleep() -> Iterator[str]:
    """A setuid-root copy of `sleep` the test brings itself (in a 0755 directory), so that the
    check never rests on what the host happens to ship."""
    directory = tempfile.mkdtemp(prefix="sandboxd-setuid-", dir="/var/tmp")
    try:
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "suid-sleep")
        shutil.copy("/usr/bin/sleep", path)
        os.chown(path, 0, 0)
        os.chmod(path, 0o4755)
        assert os.stat(path).st_mode & 0o7777 == 0o4755
        yield path
    finally:
        shutil.rmtree(directory)


# Its own Pool (with the bind) runs among the tests that use pools, after the raw seccomp
# tests that count this process's fds and children (tests/conftest.py orders by the fixture).
@pytest.mark.usefixtures("pool")
def test_setuid_binaries_do_not_elevate(setuid_sleep: str) -> None:
    code = textwrap.dedent(
        """
        import json, os, subprocess, sys, time
        out = {"nosuid": {d: bool(os.statvfs(d).f_flag & os.ST_NOSUID) for d in sys.argv[1:3]}}
        for path in sys.argv[2:]:
            if not os.path.exists(path):
                out[path] = "absent"
                continue
            st = os.stat(path)
            out[path + " mode"] = oct(st.st_mode & 0o7000)
            # newgrp without a group execs the user's shell at once (its comm becomes sh);
            # asked for root's group, it stays newgrp until it fails
            args = {"sleep": [path, "30"], "newgrp": [path, "root"]}.get(
                os.path.basename(path).rsplit("-", 1)[-1], [path])
            p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            # ids are read once the program is exec'd (its comm is its name), not after a guess
            name = os.path.basename(path)[:15]
            for _ in range(2000):
                status = open(f"/proc/{p.pid}/status").read()
                if status.splitlines()[0].split()[1] == name:
                    break
                time.sleep(0.005)
            out[path] = [l.split()[1:] for l in status.splitlines() if l.startswith("Uid:")][0]
            out[path + " comm"] = status.splitlines()[0].split()[1]
            p.kill(); p.communicate()
        print(json.dumps(out))
        """
    )
    directory = os.path.dirname(setuid_sleep)
    with Pool(PoolConfig(warm_workers_per_runtime=1, runtimes=(Runtime.PYTHON,),
                         readonly_binds=(directory,))) as pool:  # fmt: skip
        outcome = run(
            pool, Runtime.PYTHON, code, args=("/usr/bin", setuid_sleep, *SYSTEM_SETUID),
            limits=Limits(wall_time_ms=30_000),  # four programs started on a busy machine
        )  # fmt: skip
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    seen = json.loads(outcome.stdout)
    expected: dict[str, object] = {"nosuid": {"/usr/bin": True, setuid_sleep: True}}
    for path in (setuid_sleep, *SYSTEM_SETUID):
        if not os.path.exists(path):
            expected[path] = "absent"  # the host lacks it; ours is always there
            continue
        assert os.stat(path).st_mode & 0o4000, f"{path} is not setuid on the host"
        expected[path + " mode"] = "0o4000"  # the bit is visible inside...
        expected[path] = [str(SANDBOX_UID)] * 4  # ...and elevates nothing
        expected[path + " comm"] = os.path.basename(path)[:15]
    assert seen == expected
