"""No execution can observe or influence another (DESIGN §2), same tenant or not.

Execution A pollutes everything a shared runtime would carry over — builtins, globals,
prototypes, module caches, env, files in /tmp, /work and /dev/shm — and B, run after it on
the same pool, checks that it sees a pristine machine. A background process started by A
must die with A, never see B, and never get B's secrets.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

import psutil
import pytest

from sandboxd_pool import ExecutionRequest, Limits, Outcome, Pool, Runtime, Verdict

PY = Runtime.PYTHON
JS = Runtime.JAVASCRIPT

POLLUTE = {
    PY: r"""
import builtins, json, os, sys, types
print("A-ran", flush=True)
builtins.POLLUTED = 1
builtins.print = lambda *a, **k: sys.__stdout__.write("EVIL\n")
builtins.open = lambda *a, **k: None
json.dumps = lambda *a, **k: "EVIL"
os.environ["POLLUTED"] = "1"
os.putenv("POLLUTED_PUTENV", "1")
sys.modules["polluter_marker"] = types.ModuleType("polluter_marker")
sys.modules["base64"] = types.ModuleType("base64")
sys.path.insert(0, "/tmp")
for d in ("/tmp", "/work", "/dev/shm"):
    with os.fdopen(os.open(f"{d}/polluted.txt", os.O_CREAT | os.O_WRONLY, 0o666), "w") as f:
        f.write("A was here")
for shadow in ("/work/json.py", "/tmp/base64.py", "/work/hashlib.py"):
    with os.fdopen(os.open(shadow, os.O_CREAT | os.O_WRONLY, 0o666), "w") as f:
        f.write("EVIL = True\n")
os.makedirs("/work/node_modules/leftpad", exist_ok=True)
with os.fdopen(os.open("/work/node_modules/leftpad/index.js", os.O_CREAT | os.O_WRONLY, 0o666), "w") as f:
    f.write("module.exports = 'EVIL';")
for target in ("/usr/lib/sitecustomize.py", "/etc/profile.d/evil.sh", "/opt/sandboxd/python_boot.py"):
    try:
        with os.fdopen(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666), "w") as f:
            f.write("EVIL = True\n")
        sys.__stdout__.write(f"WROTE {target}\n")
    except OSError:
        pass
sys.setrecursionlimit(50)
os.umask(0o777)
""",
    JS: r"""
const fs = require('fs');
const Module = require('module');
console.log('A-ran');
for (const d of ['/tmp', '/work', '/dev/shm']) fs.writeFileSync(d + '/polluted.txt', 'A was here');
fs.mkdirSync('/work/node_modules/leftpad', { recursive: true });
fs.writeFileSync('/work/node_modules/leftpad/index.js', "module.exports = 'EVIL';");
fs.writeFileSync('/work/json.py', 'EVIL = True\n');
for (const target of ['/usr/lib/node_modules/evil.js', '/opt/sandboxd/node_boot.js', '/etc/evil']) {
  try { fs.writeFileSync(target, 'EVIL'); process.stdout.write(`WROTE ${target}\n`); } catch (e) {}
}
console.log = () => process.stdout.write('EVIL\n');
console.error = () => {};
Object.prototype.polluted = 1;
Array.prototype.push = function () { return 'EVIL'; };
String.prototype.toUpperCase = function () { return 'EVIL'; };
globalThis.XMLHttpRequest = null;
globalThis.fetch = () => 'EVIL';
globalThis.POLLUTED = 1;
JSON.stringify = () => 'EVIL';
Math.random = () => 4;
process.env.POLLUTED = '1';
process.umask(0o777);
require.cache['/work/helper.js'] = { id: '/work/helper.js', filename: '/work/helper.js',
  loaded: true, exports: 'EVIL', children: [], paths: [] };
Module.prototype.require = function () { return 'EVIL'; };
""",
}

CHECK = {
    PY: r"""
import builtins, json, os, sys, base64
r = {}
r["print"] = type(print).__name__
r["open"] = type(open).__name__
r["builtins_polluted"] = hasattr(builtins, "POLLUTED")
r["json_dumps"] = json.dumps({"a": 1})
r["json_from"] = json.__file__.startswith("/work")
r["base64"] = base64.b64encode(b"hi").decode()
r["env"] = dict(os.environ)
r["marker_module"] = "polluter_marker" in sys.modules
r["sys_path_tmp"] = "/tmp" in sys.path
r["recursion_limit_ok"] = sys.getrecursionlimit() >= 1000
old = os.umask(0o022); r["umask"] = oct(old)
r["work"] = sorted(os.listdir("/work"))
r["tmp"] = sorted(os.listdir("/tmp"))
r["shm"] = sorted(os.listdir("/dev/shm"))
r["helper"] = __import__("helper").VALUE
print(json.dumps(r))
""",
    JS: r"""
const fs = require('fs');
const r = {};
r.protoPolluted = ({}).polluted === undefined ? null : ({}).polluted;
const a = []; r.push = a.push(1);
r.upper = 'abc'.toUpperCase();
r.hasXhr = 'XMLHttpRequest' in globalThis;
r.fetch = typeof fetch === 'function' ? fetch.name : typeof fetch;
r.globalPolluted = 'POLLUTED' in globalThis;
r.random = Math.random() < 1;
r.env = process.env;
r.umask = process.umask(0o022).toString(8);
try { require('leftpad'); r.leftpad = 'FOUND'; } catch (e) { r.leftpad = e.code; }
r.helper = require('./helper.js');
r.work = fs.readdirSync('/work').sort();
r.tmp = fs.readdirSync('/tmp').sort();
r.shm = fs.readdirSync('/dev/shm').sort();
r.stringify = JSON.stringify({ a: 1 });
console.log(JSON.stringify(r));
""",
}

HELPER = {
    PY: {"helper.py": b"VALUE = 'GOOD'\n"},
    JS: {"helper.js": b"module.exports = 'GOOD';\n"},
}
CLEAN_ENV = {"ONLY_MINE": "1"}

EXPECTED = {
    PY: {
        "print": "builtin_function_or_method",
        "open": "builtin_function_or_method",
        "builtins_polluted": False,
        "json_dumps": '{"a": 1}',
        "json_from": False,
        "base64": "aGk=",
        "env": CLEAN_ENV,
        "marker_module": False,
        "sys_path_tmp": False,
        "recursion_limit_ok": True,
        "umask": "0o22",
        "work": ["helper.py", "main.py"],
        "tmp": [],
        "shm": [],
        "helper": "GOOD",
    },
    JS: {
        "protoPolluted": None,
        "push": 1,
        "upper": "ABC",
        "hasXhr": False,
        "fetch": "fetch",
        "globalPolluted": False,
        "random": True,
        "env": CLEAN_ENV,
        "umask": "22",
        "leftpad": "MODULE_NOT_FOUND",
        "helper": "GOOD",
        "work": ["helper.js", "main.js"],
        "tmp": [],
        "shm": [],
        "stringify": '{"a":1}',
    },
}


def execute(pool: Pool, runtime: Runtime, code: str, tenant: str, **fields: object) -> Outcome:
    return pool.execute(ExecutionRequest(runtime=runtime, code=code, tenant=tenant, **fields))  # type: ignore[arg-type]


def pollute(pool: Pool, runtime: Runtime, tenant: str) -> None:
    out = execute(pool, runtime, POLLUTE[runtime], tenant, env={"A_ENV": "1"})
    assert out.verdict is Verdict.OK, out
    # It did run, and nothing it tried outside its scratch dirs was writable.
    assert out.stdout == b"A-ran\n", out


def check(pool: Pool, runtime: Runtime, tenant: str) -> None:
    out = execute(pool, runtime, CHECK[runtime], tenant, env=CLEAN_ENV, files=HELPER[runtime])
    assert out.verdict is Verdict.OK, out
    assert json.loads(out.stdout) == EXPECTED[runtime], (runtime, tenant)


@pytest.mark.parametrize("victim", [PY, JS], ids=["python-victim", "javascript-victim"])
def test_pollution_does_not_carry_over(pool: Pool, victim: Runtime) -> None:
    """Alternate polluters (both runtimes) with checks from another tenant and the same
    tenant, for more executions than there are warm workers."""
    assert pool.wait_until_ready(30)
    first_pids = set(pool.worker_pids()[victim])
    checked = 0
    for round_ in range(4):
        for polluter in (victim, PY if victim is JS else JS):
            pollute(pool, polluter, "tenant-a")
            check(pool, victim, "tenant-b")  # another tenant
            check(pool, victim, "tenant-a")  # the polluter's own tenant
            checked += 2
        if round_ == 0:
            check(pool, victim, "tenant-a")
            checked += 1
    assert checked > 2 * pool.config.warm_workers_per_runtime
    # Every warm worker there was at the start has been used (and none of them is back).
    assert not first_pids & set(pool.worker_pids()[victim])


# -- a background process left behind by A ------------------------------------------------

SNOOP_SCRIPT = (
    "while :; do "
    "cat /work/* /tmp/* /dev/shm/* /proc/[0-9]*/environ /proc/[0-9]*/cmdline "
    "/proc/[0-9]*/fd/0 /proc/[0-9]*/root/work/* 2>/dev/null; "
    "ls /proc 2>/dev/null | tr '\\n' ' '; echo; "
    "sleep 0.01; done"
)

DAEMON = {
    PY: r"""
import os, subprocess, sys, time
token, linger = sys.argv[1], float(sys.argv[2])
script = sys.argv[3] + " # " + token
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sh", ["/bin/sh", "-c", script])
    os._exit(0)
os.wait()
print("daemon started", flush=True)
time.sleep(linger)
""",
    JS: r"""
const cp = require('child_process');
const [token, linger, script] = process.argv.slice(2);
cp.spawn('/bin/sh', ['-c', script + ' # ' + token],
         { detached: true, stdio: ['ignore', 'inherit', 'inherit'] }).unref();
console.log('daemon started');
setTimeout(() => {}, Number(linger) * 1000);
""",
}

VICTIM = r"""
import json, os, sys, time
secret = sys.stdin.read()
time.sleep(0.3)
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
cmds = {p: open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace") for p in pids}
print(json.dumps({"pids": pids, "cmds": cmds, "secret_len": len(secret)}))
"""


def host_processes_with(token: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if token in " ".join(proc.info["cmdline"] or []) and proc.status() != "zombie":
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def run_victim(pool: Pool, secret: str) -> Outcome:
    return execute(
        pool,
        PY,
        VICTIM,
        "tenant-b",
        stdin=secret.encode(),
        args=(secret,),
        env={"SECRET": secret},
        files={"secret.txt": secret.encode(), f"dir-{secret}/x": secret.encode()},
    )


def assert_victim_alone(victim: Outcome, token: str) -> None:
    assert victim.verdict is Verdict.OK, victim
    got = json.loads(victim.stdout)
    assert got["pids"] == [1], got
    assert token not in json.dumps(got["cmds"])
    assert got["secret_len"] == 38


@pytest.mark.parametrize("polluter", [PY, JS], ids=["python-daemon", "javascript-daemon"])
def test_background_process_dies_with_its_execution(pool: Pool, polluter: Runtime) -> None:
    token = f"snoop-{uuid.uuid4().hex}"
    secret = f"secret-{uuid.uuid4().hex[:31]}"
    a = execute(pool, polluter, DAEMON[polluter], "tenant-a", args=(token, "0", SNOOP_SCRIPT))
    assert a.verdict is Verdict.OK, a
    assert b"daemon started\n" in a.stdout, a
    # The daemon is gone with its execution (allow the kernel a moment to tear it down).
    assert wait_for(lambda: not host_processes_with(token), 2.0), host_processes_with(token)

    victim = run_victim(pool, secret)
    assert_victim_alone(victim, token)
    assert secret.encode() not in a.stdout + a.stderr


@pytest.mark.parametrize("polluter", [PY, JS], ids=["python-daemon", "javascript-daemon"])
def test_concurrent_snooper_sees_nothing_of_another_execution(
    pool: Pool, polluter: Runtime
) -> None:
    token = f"snoop-{uuid.uuid4().hex}"
    secret = f"secret-{uuid.uuid4().hex[:31]}"
    result: dict[str, Outcome] = {}

    def snooper() -> None:
        result["a"] = execute(
            pool,
            polluter,
            DAEMON[polluter],
            "tenant-a",
            args=(token, "2.5", SNOOP_SCRIPT),
            limits=Limits(wall_time_ms=20_000),
        )

    thread = threading.Thread(target=snooper)
    thread.start()
    try:
        # The snooping daemon is really running (on the host) before the victim starts.
        assert wait_for(lambda: bool(host_processes_with(token)), 10.0), "daemon never started"
        victim = run_victim(pool, secret)
        assert_victim_alone(victim, token)
        assert host_processes_with(token), "the daemon should still be running while A runs"
    finally:
        thread.join(timeout=30)
    assert not thread.is_alive()
    a = result["a"]
    assert a.verdict is Verdict.OK, a
    assert b"daemon started\n" in a.stdout, a
    assert a.stdout.count(b"\n") > 10, "the snooper loop should have run many times"
    assert secret.encode() not in a.stdout + a.stderr
    assert wait_for(lambda: not host_processes_with(token), 2.0), host_processes_with(token)
