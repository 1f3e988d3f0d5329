"""No execution can observe or influence another (SECURITY.md, "Threat model"), same tenant or not.

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
from helpers import SANDBOX_PIDS
from pollution_programs import CHECK, CLEAN_ENV, EXPECTED, HELPER, JS, POLLUTE, PY

from sandboxd_pool import ExecutionRequest, Limits, Outcome, Pool, Runtime, Verdict


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
    assert got["pids"] == SANDBOX_PIDS[PY], got  # the init, the program, its exit helper
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
