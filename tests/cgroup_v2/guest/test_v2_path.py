"""The v2 path of jail/cgroups.py on a real kernel (run inside the VM): workers created inside
their cgroups (clone3 CLONE_INTO_CGROUP) and the cgroup.procs fallback where clone3 is refused,
the kernel's own counters (memory.peak, memory.events, pids.events, cpu.stat), cgroup.kill,
and a delegated cgroup (systemd's Delegate=yes) divided with the daemon in a leaf."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
from e2e.daemon import Daemon, spawn

from sandboxd_client import Client, Limits, Verdict
from sandboxd_pool.jail.cgroups import DAEMON_LEAF, UNIFIED, CgroupSetup, WorkerCgroup, clone_into

from .conftest import CGROUP2, CREATED_INSIDE, cgroup_of, cgroup_tree

MiB = 1024 * 1024


def test_clone_into_creates_the_child_inside_the_cgroup() -> None:
    """The child's very first look at /proc/self/cgroup already shows the target."""
    setup = CgroupSetup.detect(parent_name="v2-clone-into")
    cg = setup.worker(f"z{os.getpid()}-1")
    cg.create()
    try:
        r, w = os.pipe()
        directory = cg.open_dir()
        pid = clone_into(0, directory)
        if pid == 0:
            with open("/proc/self/cgroup", "rb") as f:
                os.write(w, f.read())
            os._exit(0)
        os.close(directory)
        os.close(w)
        seen = os.read(r, 4096).decode()
        os.close(r)
        assert os.waitpid(pid, 0)[1] == 0
        assert seen == f"0::/v2-clone-into/z{os.getpid()}-1\n"
    finally:
        assert cg.remove()
        os.rmdir(setup.parents[UNIFIED])


# A pool in a process whose seccomp filter answers clone3 with ENOSYS, as container runtimes'
# default profiles do: the zygote's probe sees it, and workers move in through cgroup.procs.
NO_CLONE3_DRIVER = r"""
import errno, json, logging, sys
import pyseccomp as seccomp
from sandboxd_pool import ExecutionRequest, Limits, Pool, PoolConfig, Runtime

messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger("sandboxd_pool").addHandler(Keep())
logging.getLogger("sandboxd_pool").setLevel(logging.INFO)

f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
f.load()
config = PoolConfig(warm_workers_per_runtime=1, cgroup_parent="v2-no-clone3")
report = {}
with Pool(config) as pool:
    assert pool.wait_until_ready(120), pool.health()
    report["workers"] = {rt.value: [open(f"/proc/{p}/cgroup").read() for p in pids]
                         for rt, pids in pool.worker_pids().items()}
    report["zygote"] = pool.zygote_pid
    out = []
    for runtime, code in ((Runtime.PYTHON, "b = []\nwhile True: b.append(bytearray(16 << 20))"),
                          (Runtime.JAVASCRIPT, "console.log('hello')")):
        o = pool.execute(ExecutionRequest(runtime=runtime, code=code,
                                          limits=Limits(memory_bytes=64 << 20, wall_time_ms=30000)))
        out.append([o.verdict.value, o.stdout.decode()])
    report["outcomes"] = out
report["messages"] = messages
print(json.dumps(report))
"""


def test_without_clone3_workers_move_in_through_cgroup_procs() -> None:
    before = cgroup_tree()
    done = subprocess.run(
        [sys.executable, "-c", NO_CLONE3_DRIVER], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    refused = [m for m in report["messages"] if "through cgroup.procs" in m]
    assert refused == [
        "cgroup v2: workers move into their cgroups through cgroup.procs: "
        "clone3(CLONE_INTO_CGROUP) failed here ([Errno 38] clone3: Function not implemented)"
    ], report["messages"]
    assert CREATED_INSIDE not in report["messages"]
    zygote = report["zygote"]
    for runtime, places in report["workers"].items():
        assert len(places) == 1 and places[0].startswith(f"0::/v2-no-clone3/z{zygote}-"), (
            runtime,
            places,
        )
    assert report["outcomes"] == [["MEMORY_LIMIT", ""], ["OK", "hello\n"]], report
    assert cgroup_tree() == before


# Burns CPU, forks past pids.max, then allocates past memory.max (and is OOM-killed).
COUNTERS_PROGRAM = textwrap.dedent(
    """
    import os, sys, time
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    refused = 0
    for i in range(12):
        try:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
        except OSError:
            refused += 1
    print(refused, flush=True)
    b = []
    while True:
        b.append(bytearray(8 << 20))
    """
)


def test_facts_are_the_kernels_counters() -> None:
    setup = CgroupSetup.detect(parent_name="v2-facts")
    cg = setup.worker(f"z{os.getpid()}-1")
    cg.create()
    try:
        cg.set_limits(64 * MiB, 8)
        program = subprocess.Popen(
            [sys.executable, "-c", COUNTERS_PROGRAM],
            stdout=subprocess.PIPE,
            preexec_fn=lambda: _enter(cg),
        )
        assert program.stdout is not None
        with program.stdout:  # its sleeping children hold the pipe: no communicate()
            refused = int(program.stdout.readline())
            assert program.wait(timeout=120) == -signal.SIGKILL  # the OOM killer's
        assert refused >= 4  # 8 tasks at most: itself and 7 children
        facts = cg.facts()
        assert facts.oom_kills >= 1
        assert facts.pids_limit_hits == refused
        assert 32 * MiB <= facts.peak_memory_bytes <= 64 * MiB
        assert facts.cpu_time_ns >= 300_000_000
        assert facts.cpu_time_ns == cg.cpu_time_ns()
        sleepers = _procs(cg)
        assert len(sleepers) == 7, sleepers  # the children still sleep
        cg.kill_all()  # cgroup.kill
        _wait_gone(sleepers)
    finally:
        assert cg.remove()
        os.rmdir(setup.parents[UNIFIED])


def test_cgroup_kill_ends_a_tree_that_keeps_forking() -> None:
    """A shell that keeps starting daemons (double forks, new sessions) is gone at once."""
    setup = CgroupSetup.detect(parent_name="v2-kill")
    cg = setup.worker(f"z{os.getpid()}-1")
    cg.create()
    try:
        cg.set_limits(256 * MiB, 64)
        spawner = subprocess.Popen(
            ["sh", "-c", "while :; do setsid sh -c 'sleep 300 &' ; sleep 0.05; done"],
            preexec_fn=lambda: _enter(cg),
        )
        deadline = time.monotonic() + 30
        while len(_procs(cg)) < 6:
            assert time.monotonic() < deadline, _procs(cg)
            time.sleep(0.05)
        tree = _procs(cg)
        cg.kill_all()
        assert spawner.wait(timeout=10) == -signal.SIGKILL
        _wait_gone(tree)
        assert _procs(cg) == []
    finally:
        assert cg.remove()
        os.rmdir(setup.parents[UNIFIED])


def _enter(cg: WorkerCgroup) -> None:
    with open(os.path.join(cg.paths[UNIFIED], "cgroup.procs"), "w") as f:
        f.write("0")


def _procs(cg: WorkerCgroup) -> list[int]:
    with open(os.path.join(cg.paths[UNIFIED], "cgroup.procs")) as f:
        return [int(p) for p in f.read().split()]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while running := [p for p in pids if _running(p)]:
        assert time.monotonic() < deadline, running
        time.sleep(0.02)


# ------------------------------------------------------------------------- a delegated unit

UNIT = "sandboxd-test.service"


def _start_in(cgroup: str, args: list[str]) -> Daemon:
    """`sandboxd serve ARGS` started inside `cgroup`, as systemd starts a unit's main process."""

    def enter() -> None:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write("0")

    return spawn(["--listen", "127.0.0.1:0", *args], preexec_fn=enter)


def _workers_of(daemon: int, parent: str) -> dict[int, str]:
    """pid -> cgroup of the daemon's workers (children of its zygote) in worker cgroups."""
    found = {}
    for zygote in psutil.Process(daemon).children():
        for child in zygote.children():
            place = cgroup_of(child.pid)
            if place.startswith(f"{parent}/z{zygote.pid}-"):
                found[child.pid] = place
    return found


def test_a_delegated_cgroup_gets_the_daemon_in_a_leaf_and_the_workers_beside_it() -> None:
    """What systemd does for a unit with Delegate=yes (deploy/systemd/sandboxd.service): the
    unit's own cgroup, marked trusted.delegate=1, holding the daemon. The daemon moves into
    UNIT/daemon (a cgroup with processes cannot enable controllers for its children), makes
    UNIT/sandboxd for the workers, and limits them there."""
    before = cgroup_tree()
    unit = os.path.join(CGROUP2, UNIT)
    with open(os.path.join(CGROUP2, "cgroup.subtree_control"), "w") as f:
        f.write("+memory +pids +cpu")  # systemd enables what Delegate=yes asks for on the way
    os.mkdir(unit)
    os.setxattr(unit, "trusted.delegate", b"1")
    daemon = _start_in(unit, ["--warm-workers", "1"])
    try:
        listening = daemon.wait_for_log("listening", 120)
        placement = (
            f"sandboxd: cgroup v2: worker cgroups under {unit}/sandboxd (delegated by systemd "
            f"(Delegate=yes, trusted.delegate)); this process moved into {unit}/{DAEMON_LEAF}"
        )
        assert placement in daemon.log_messages(), daemon.raw_stderr
        assert CREATED_INSIDE in daemon.log_messages(), daemon.raw_stderr
        assert cgroup_of(daemon.proc.pid) == f"/{UNIT}/{DAEMON_LEAF}"
        with open(os.path.join(unit, "cgroup.procs")) as f:
            assert f.read() == ""  # nothing left in the unit's own cgroup
        with open(os.path.join(unit, "cgroup.subtree_control")) as f:
            assert {"memory", "pids", "cpu"} <= set(f.read().split())
        # one warm worker per runtime, each in its own cgroup (the Python template: in none)
        deadline = time.monotonic() + 120
        while len(workers := _workers_of(daemon.proc.pid, f"/{UNIT}/sandboxd")) < 2:
            assert time.monotonic() < deadline, workers
            time.sleep(0.1)
        assert len(set(workers.values())) == 2, workers
        with Client(listening["address"]) as client:
            for runtime, code in (
                ("python", "print('hello')"),
                ("javascript", "console.log('hello')"),
            ):
                r = client.execute(runtime, code, timeout_s=60)
                assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r
            balloon = client.execute(
                "python",
                "b = []\nwhile True: b.append(bytearray(16 << 20))",
                limits=Limits(memory_bytes=64 * MiB),
                timeout_s=60,
            )
            assert balloon.verdict is Verdict.MEMORY_LIMIT, balloon
    finally:
        rc = daemon.stop()
        for leftover in (os.path.join(unit, DAEMON_LEAF), unit):
            if os.path.isdir(leftover):
                os.rmdir(leftover)  # systemd removes the unit's cgroup when it stops
    assert rc == 0, "".join(daemon.raw_stderr[-40:])
    assert cgroup_tree() == before


DETECT = (
    "from sandboxd_pool.jail.cgroups import CgroupSetup\n"
    "s = CgroupSetup.detect()\n"
    "print(s.placement or s.reason)\n"
    "print(open('/proc/self/cgroup').read().strip())\n"
)


def test_a_cgroup_owned_by_a_non_root_user_is_delegated_to_it() -> None:
    """What systemd does for a user's service with Delegate=yes (or an admin's chown): the
    cgroup and its cgroup.procs, cgroup.subtree_control and cgroup.threads belong to the user,
    no xattr. A process of that user in it divides it like a delegated unit."""
    before = cgroup_tree()
    uid = 4242
    mine = os.path.join(CGROUP2, "user-delegated")
    with open(os.path.join(CGROUP2, "cgroup.subtree_control"), "w") as f:
        f.write("+memory +pids +cpu")
    os.mkdir(mine)
    try:
        for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(os.path.join(mine, name), uid, uid)

        def enter() -> None:
            with open(os.path.join(mine, "cgroup.procs"), "w") as f:
                f.write("0")

        done = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
             sys.executable, "-c", DETECT],
            capture_output=True, text=True, timeout=60, preexec_fn=enter,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        placement, own = done.stdout.splitlines()
        assert placement == (
            f"cgroup v2: worker cgroups under {mine}/sandboxd (delegated to uid {uid}); "
            f"this process moved into {mine}/{DAEMON_LEAF}"
        )
        assert own == f"0::/user-delegated/{DAEMON_LEAF}"
    finally:
        for d, _dirs, _files in sorted(os.walk(mine), key=lambda e: -len(e[0])):
            os.rmdir(d)
    assert cgroup_tree() == before
