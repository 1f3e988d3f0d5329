"""Subuid jail mode, for real: a Pool run by a NON-ROOT user on this host (docs/architecture.md, "The two jail modes").

The test (run as root, like the rest of the suite) creates a throwaway system user with its own
/etc/subuid and /etc/subgid lines and runs a small driver (SUBUID_DRIVER below) under that uid
with `setpriv --reuid --regid --clear-groups` (no capabilities left). The driver starts a Pool
with jail_mode="auto", which must choose subuid mode, runs the scenarios and prints one JSON
report; this module asserts on it.

Files the driver needs must be readable by that user. The checkout (/work/main) is, but the
interpreter is not: it lives under /root/.pyenv and /root is 0700. Nothing is copied and no
host permission is changed: the driver runs in a private mount namespace (`unshare --mount`,
made as root before the uid switch) where a tmpfs (0755) covers /root and holds a bind of the
real /root/.pyenv at the same path. The user, its privileges and the user namespaces are the
real ones; only that one directory is made reachable, for that one process tree.

Everything is removed even on failure: the user, its subuid/subgid lines, its processes (and
any left under its subordinate ids), the temp dir. If the machine lacks something (root to run
the test, uidmap, setpriv, unshare), the test fails and says what; it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

import sandboxd_pool
from sandboxd_pool.jail.mode import NEWGIDMAP, NEWUIDMAP, SUBGID_FILE, SUBUID_FILE
from sandboxd_pool.jail.policy import OUT_MAX_ENTRIES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jail"))
from hostile_programs import FORK_LIMITS, PY_FORK_BOMB

SUBID_COUNT = 65536
# The driver imports this checkout's engine and this environment's packages: the bare
# interpreter's own site-packages may hold another checkout's sandboxd_pool.
ENGINE = os.path.dirname(os.path.abspath(sandboxd_pool.__file__))
DRIVER_PATH = os.pathsep.join(
    [os.path.dirname(ENGINE), *(p for p in sys.path if p.endswith("site-packages"))]
)
DRIVER_TIMEOUT_S = 240
INTERPRETER = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
PYENV_ROOT = "/root/.pyenv"

# Run as root in a fresh private mount namespace: make /root/.pyenv reachable (see the module
# docstring), then drop to the user: setpriv clears the capabilities with the uid switch.
REACHABLE_PYENV = r"""
set -eu
user=$1; shift
d=$(mktemp -d /run/sbx-subuid-pyenv.XXXXXX)
mount --bind /root/.pyenv "$d"
mount -t tmpfs -o mode=0755,size=64k sbx-subuid-root /root
mkdir /root/.pyenv
mount --move "$d" /root/.pyenv
rmdir "$d"
cd /
exec setpriv --reuid "$user" --regid "$user" --clear-groups --inh-caps=-all "$@"
"""

SUBUID_DRIVER = r"""
import dataclasses, http.server, json, logging, os, sys, threading, time
from sandboxd_pool import ExecutionRequest, Limits, Pool, PoolConfig, Runtime
from sandboxd_pool.egress import EgressPolicy

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import sandboxd_pool
scenario = json.load(open(sys.argv[1]))
report = {"euid": os.geteuid(), "engine": os.path.dirname(sandboxd_pool.__file__)}


def run(pool, runtime, code, **kw):
    o = pool.execute(ExecutionRequest(runtime=runtime, code=code, **kw))
    return {
        "verdict": o.verdict.value,
        "exit_code": o.exit_code,
        "signal": o.signal,
        "stdout": o.stdout.decode(errors="replace"),
        "stderr": o.stderr.decode(errors="replace")[-3000:],
        "wall_time_us": o.usage.wall_time_us,
        "worker_boot_us": o.worker_boot_us,
        "files": {f.path: f.data.decode(errors="replace") for f in o.files},
        "files_truncated": o.files_truncated,
    }


def ids(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


class Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"through the proxy"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


site = http.server.HTTPServer(("127.0.0.1", 0), Site)
threading.Thread(target=site.serve_forever, daemon=True).start()
site_url = f"http://site.example.test:{site.server_address[1]}/"
config = PoolConfig(
    warm_workers_per_runtime=2,
    max_concurrent_executions=4,
    readonly_binds=(scenario["secret_dir"],),
    egress_hosts_file=scenario["egress_hosts"],
)
with Pool(config) as pool:
    report["mode"] = pool.jail_mode.mode
    report["why"] = pool.jail_mode.why
    report["uid_base"] = pool.jail_mode.uid_base
    report["gid_base"] = pool.jail_mode.gid_base
    report["cgroup_version"] = pool.cgroups.version
    report["ready"] = pool.wait_until_ready(60)
    pids = pool.worker_pids()
    report["worker_ids"] = {rt.value: [ids(p) for p in ps] for rt, ps in pids.items()}
    report["zygote_uid"] = ids(pool.zygote_pid)[0]
    for name, (runtime, code, kw) in scenario["programs"].items():
        if name == "cross_kill":
            # Every other ready worker: the JavaScript ones and all Python ones but the first
            # (the queue is first in, first out: that one runs this program).
            ready = pool.worker_pids()
            targets = [str(p) for p in ready[Runtime.JAVASCRIPT] + ready[Runtime.PYTHON][1:]]
            kw = dict(kw, args=tuple(targets))
            report["cross_kill_targets"] = targets
        if "limits" in kw:
            kw["limits"] = Limits(**kw["limits"])
        if "args" in kw:
            kw["args"] = tuple(kw["args"])
        report[name] = run(pool, Runtime(runtime), code, **kw)
        if name == "cross_kill":
            time.sleep(0.2)
            report["targets_alive"] = [os.path.exists(f"/proc/{p}") for p in targets]
    # Egress: the worker brought its loopback up and listened there from inside its own user
    # namespace (the capabilities of that namespace, which owns its network namespace).
    policy = EgressPolicy.parse([f"site.example.test:{site.server_address[1]}"], ["127.0.0.0/8"])
    egress_code = {
        "python": "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
        "javascript": "fetch(process.argv[2]).then((r) => r.text()).then(console.log)",
    }
    for runtime, code in egress_code.items():
        o = pool.execute(ExecutionRequest(runtime=Runtime(runtime), code=code, args=(site_url,)), egress=policy)
        report[f"egress_{runtime}"] = {
            "stdout": o.stdout.decode(errors="replace"),
            "stderr": o.stderr.decode(errors="replace")[-2000:],
            "egress": [dataclasses.asdict(e) for e in o.egress],
        }
site.shutdown()
print(json.dumps(report))
"""

WHOAMI = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": status["Groups"].strip(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "pids": sorted(int(d) for d in os.listdir("/proc") if d.isdigit()),
    "fds": sorted(os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                  if os.path.exists(f"/proc/self/fd/{fd}")),
    "helper_fds": os.listdir("/proc/3/fd"),
}))
"""

# Files out as a program really leaves them: modes that shut "others" out (the pool, in subuid
# mode, is one), nested folders shut after their files were written, /work itself shut, and
# what must never come back: symlinks to a file and a folder that only the pool's user can
# read (a pool following them would return them), one to /etc, a FIFO.
FILES_OUT_PY = """
import os, sys
os.makedirs("out/deep/er")
with open("out/plain.txt", "w") as f:
    f.write("plain")
fd = os.open("out/private.txt", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"private")
os.close(fd)
with open("out/deep/er/nested.txt", "w") as f:
    f.write("nested")
os.chmod("out/deep/er/nested.txt", 0)
os.chmod("out/deep/er", 0)
os.chmod("out/deep", 0o700)
os.symlink(sys.argv[1] + "/token.txt", "out/token-link")
os.symlink(sys.argv[1], "out/folder-link")
os.symlink("/etc", "out/etc-link")
os.mkfifo("out/fifo")
os.chmod("out", 0o700)
os.chmod("/work", 0o700)
print("written")
"""
FILES_OUT_JS = """
const fs = require('fs');
fs.mkdirSync('out/shut');
fs.writeFileSync('out/js.txt', 'from node', { mode: 0o600 });
fs.writeFileSync('out/shut/inner.txt', 'inner', { mode: 0o400 });
fs.chmodSync('out/shut', 0o100);
fs.symlinkSync(process.argv[2] + '/token.txt', 'out/token-link');
fs.symlinkSync(process.argv[2], 'out/folder-link');
console.log('written');
"""

# Names the pool must not return (not UTF-8: the API's path is a string), shut like the rest,
# and more names than the init opens up and the pool reads (OUT_MAX_ENTRIES): FIFOs only.
FILES_OUT_NAMES_PY = """
import os
os.mkdir(b"out/folder\\xc3", 0o700)
fd = os.open(b"out/folder\\xc3/inner", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"in a bad folder")
fd = os.open(b"out/bad\\xff", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"bad name")
fd = os.open("out/ok.txt", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"ok")
print("written")
"""
FILES_OUT_MANY_PY = f"""
import os
for n in range({OUT_MAX_ENTRIES + 2000}):
    os.mkfifo(f"out/f{{n:06d}}", 0o600)
print("made", len(os.listdir("out")))
"""

# The exit helper (python_boot.py) must hold the program's own per-request rlimits: here, with
# no memory cgroup, RLIMIT_DATA is what bounds the memory it shares with the program.
HELPER_LIMITS = """
import json
def limits(pid):
    lines = open(f"/proc/{pid}/limits").read().splitlines()[1:]
    return {line[:26].strip(): line[26:].split()[:2] for line in lines}
print(json.dumps({"program": limits("self"), "helper": limits(3)}))
"""

CROSS_KILL = """
import json, os, sys
seen = {}
for arg in sys.argv[1:]:
    try:
        os.kill(int(arg), 9)
        seen[arg] = "killed"
    except OSError as e:
        seen[arg] = type(e).__name__
try:
    os.kill(-1, 9)  # every process this worker may signal: only its own tree
except OSError as e:
    seen["-1"] = type(e).__name__
print(json.dumps(seen), flush=True)
"""


@dataclass(frozen=True)
class SubuidUser:
    name: str
    uid: int
    subuid_start: int
    subgid_start: int
    workdir: str
    secret_path: str
    secret: str
    pool_only_dir: str  # a folder, and in it a file, that only the test user (the pool) reads
    pool_only: str  # that file's content


def _require_machine() -> None:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the test creates a user and writes /etc/subuid)")
    for tool in (NEWUIDMAP, NEWGIDMAP):
        if not os.access(tool, os.X_OK):
            missing.append(f"{tool} (apt-get install uidmap; scripts/install-system-deps.sh)")
    for tool in ("setpriv", "unshare", "useradd", "userdel"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if not INTERPRETER.startswith(PYENV_ROOT + "/") and not os.access(INTERPRETER, os.X_OK):
        missing.append(f"an interpreter the test user can run ({INTERPRETER})")
    if missing:
        pytest.fail("subuid mode test cannot run here; missing: " + "; ".join(missing))


def _free_range(path: str, floor: int) -> int:
    """A start above every range already in `path` (and above floor)."""
    end = floor
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                end = max(end, int(parts[1]) + int(parts[2]))
    return end


def _remove_lines(path: str, prefix: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        with open(path) as f:
            lines = f.readlines()
        kept = [line for line in lines if not line.startswith(prefix)]
        if kept != lines:
            with open(path, "w") as f:
                f.writelines(kept)


def _processes_of(uids: range | set[int]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["uids"]):
        with contextlib.suppress(psutil.Error):
            if any(u in uids for u in proc.info["uids"] or ()):
                found.append(proc)
    return found


@pytest.fixture(scope="module")
def subuid_user() -> Iterator[SubuidUser]:
    _require_machine()
    name = f"sbxd-t{os.getpid()}"
    # Not under /tmp: the jail mounts its own /tmp over that path, hiding the secret's bind.
    workdir = tempfile.mkdtemp(prefix="sandboxd-subuid-", dir="/var/tmp")
    created_user = False
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        created_user = True
        uid = pwd.getpwnam(name).pw_uid
        # Above root mode's worker uids (3000000 + 4096) and every range already given out;
        # the gid range deliberately differs from the uid range.
        subuid = _free_range(SUBUID_FILE, 10_000_000)
        subgid = _free_range(SUBGID_FILE, 20_000_000)
        with open(SUBUID_FILE, "a") as f:
            f.write(f"{name}:{subuid}:{SUBID_COUNT}\n")
        with open(SUBGID_FILE, "a") as f:
            f.write(f"{name}:{subgid}:{SUBID_COUNT}\n")
        os.chmod(workdir, 0o755)
        secret_dir = os.path.join(workdir, "root-only")
        os.mkdir(secret_dir, 0o755)
        secret = "s3cret-" + secrets.token_hex(16)
        secret_path = os.path.join(secret_dir, "secret.txt")
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secret.encode())
        os.close(fd)
        pool_only_dir = os.path.join(workdir, "pool-only")
        os.mkdir(pool_only_dir, 0o700)
        pool_only = "pool-only-" + secrets.token_hex(16)
        with open(os.path.join(pool_only_dir, "token.txt"), "w") as f:
            f.write(pool_only)
        os.chmod(os.path.join(pool_only_dir, "token.txt"), 0o600)
        for path in (pool_only_dir, os.path.join(pool_only_dir, "token.txt")):
            os.chown(path, uid, uid)
        yield SubuidUser(
            name, uid, subuid, subgid, workdir, secret_path, secret, pool_only_dir, pool_only
        )
    finally:
        if created_user:
            uid = pwd.getpwnam(name).pw_uid
            _kill_and_wait(lambda: _processes_of({uid}))
            subprocess.run(["userdel", name], check=False, capture_output=True)
        _remove_lines(SUBUID_FILE, f"{name}:")
        _remove_lines(SUBGID_FILE, f"{name}:")
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_and_wait(find: Callable[[], list[psutil.Process]]) -> list[int]:
    """SIGKILL what find() returns (our own user's processes only); the pids that were found."""
    found = [p.pid for p in find()]
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while find() and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _programs(user: SubuidUser) -> dict[str, list[object]]:
    fork_limits = {"max_processes": FORK_LIMITS.max_processes, "wall_time_ms": 3000}
    read_secret = f"print(open({user.secret_path!r}).read())"
    read_secret_js = f"console.log(require('fs').readFileSync({user.secret_path!r}, 'utf8'))"
    return {
        "hello_py": ["python", "print('hello')", {}],
        "hello_js": ["javascript", "console.log('hello')", {}],
        "whoami": ["python", WHOAMI, {}],
        "balloon": [
            "python",
            "b = bytearray(400 * 1024 * 1024)\nprint('allocated')",
            {"limits": {"memory_bytes": 128 * 1024 * 1024}},
        ],
        "fork_bomb": ["python", PY_FORK_BOMB, {"args": ["32"], "limits": fork_limits}],
        "secret_py": ["python", read_secret, {}],
        "secret_js": ["javascript", read_secret_js, {}],
        "tmpfs": [
            "python",
            "open('/work/big', 'wb').write(b'x' * (4 << 20))",
            {"limits": {"tmpfs_bytes": 1 << 20}},
        ],
        "cross_kill": ["python", CROSS_KILL, {}],
        "files_out_names": ["python", FILES_OUT_NAMES_PY, {}],
        "files_out_many": ["python", FILES_OUT_MANY_PY, {"limits": {"wall_time_ms": 30_000}}],
        "helper_limits": [
            "python",
            HELPER_LIMITS,
            {"limits": {"cpu_time_ms": 1500, "max_processes": 9, "memory_bytes": 96 << 20}},
        ],
        "files_out_py": ["python", FILES_OUT_PY, {"args": [user.pool_only_dir]}],
        "files_out_js": ["javascript", FILES_OUT_JS, {"args": [user.pool_only_dir]}],
        "hello_after": ["python", "print('still serving')", {}],
    }


@pytest.fixture(scope="module")
def report(subuid_user: SubuidUser) -> dict[str, object]:
    user = subuid_user
    driver = os.path.join(user.workdir, "driver.py")
    scenario = os.path.join(user.workdir, "scenario.json")
    hosts = os.path.join(user.workdir, "egress-hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 site.example.test\n")
    with open(driver, "w") as f:
        f.write(textwrap.dedent(SUBUID_DRIVER))
    with open(scenario, "w") as f:
        json.dump(
            {
                "secret_dir": os.path.dirname(user.secret_path),
                "programs": _programs(user),
                "egress_hosts": hosts,
            },
            f,
        )
    for path in (driver, scenario, hosts):
        os.chmod(path, 0o644)
    command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c"]
    command += [REACHABLE_PYENV, "sh", user.name, INTERPRETER, driver, scenario]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": DRIVER_PATH}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S, env=env
        )
    finally:
        # Whatever happened, nothing of the user's may run on: the zygote kills its workers
        # when the driver goes; anything left (under the user's uid or a subordinate uid) is
        # killed here, and the test below fails on it.
        leftovers = _kill_and_wait(lambda: _processes_of({user.uid}))
        leftovers += _kill_and_wait(
            lambda: _processes_of(range(user.subuid_start, user.subuid_start + SUBID_COUNT))
        )
    assert done.returncode == 0, f"driver failed ({done.returncode}):\n{done.stderr[-6000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["_stderr"] = done.stderr
    result["_leftovers"] = leftovers
    return result


def test_auto_chooses_subuid_mode_for_a_non_root_user(
    report: dict, subuid_user: SubuidUser
) -> None:
    assert report["euid"] == subuid_user.uid != 0
    assert report["engine"] == ENGINE  # this checkout's, not the interpreter's own
    assert report["mode"] == "subuid", report["why"]
    assert "lacks CAP_SYS_ADMIN and CAP_SETUID" in report["why"]
    assert (report["uid_base"], report["gid_base"]) == (
        subuid_user.subuid_start,
        subuid_user.subgid_start,
    )
    assert report["ready"] is True
    assert report["zygote_uid"] == subuid_user.uid
    stderr = report["_stderr"]
    assert "jail mode subuid" in stderr
    assert "the Python template is off" in stderr
    # No cgroup is writable by this user here: the rlimit fallback, announced loudly.
    assert report["cgroup_version"] == 0
    assert "falling back to rlimits" in stderr


def test_hello_in_both_runtimes(report: dict) -> None:
    for name in ("hello_py", "hello_js"):
        assert (report[name]["verdict"], report[name]["stdout"]) == ("OK", "hello\n"), report[name]
    assert (report["hello_after"]["verdict"], report["hello_after"]["stdout"]) == (
        "OK",
        "still serving\n",
    )


def test_each_worker_has_its_own_subordinate_uid_and_gid(
    report: dict, subuid_user: SubuidUser
) -> None:
    ids = [tuple(i) for workers in report["worker_ids"].values() for i in workers]
    assert len(ids) == 4, report["worker_ids"]
    uids = [u for u, _ in ids]
    gids = [g for _, g in ids]
    assert len(set(uids)) == len(uids), ids
    assert len(set(gids)) == len(gids), ids
    for uid, gid in ids:
        assert subuid_user.subuid_start <= uid < subuid_user.subuid_start + SUBID_COUNT
        assert gid - subuid_user.subgid_start == uid - subuid_user.subuid_start


def test_the_worker_is_the_sandbox_user_with_nothing_left(report: dict) -> None:
    assert report["whoami"]["verdict"] == "OK", report["whoami"]
    me = json.loads(report["whoami"]["stdout"])
    assert (me["uid"], me["gid"], me["groups"]) == (1000, 1000, "")
    assert me["cap_eff"] == me["cap_bnd"] == "0000000000000000"
    assert (me["no_new_privs"], me["seccomp"]) == ("1", "2")
    # Its init (PID 1), itself and its exit helper (python_boot.py), which holds no fd.
    assert me["pids"] == [1, 2, 3], me
    assert me["helper_fds"] == [], me
    # Neither the seccomp listener nor the scratch fs context stayed in the worker: only
    # stdin, stdout and stderr, three pipes.
    assert [fd.split(":")[0] for fd in me["fds"]] == ["pipe"] * 3, me["fds"]


def test_memory_balloon_is_bounded_by_the_rlimit_fallback(report: dict) -> None:
    # As in the root-mode cgroup fallback test: with no memory cgroup there is no OOM kill to
    # report, so the verdict is the program's own MemoryError (MEMORY_LIMIT needs a cgroup).
    balloon = report["balloon"]
    assert balloon["verdict"] == "RUNTIME_ERROR", balloon
    assert "MemoryError" in balloon["stderr"]
    assert "allocated" not in balloon["stdout"]


def test_fork_bomb_gets_the_root_mode_verdict(report: dict) -> None:
    # The same program and assertions as tests/jail/test_resources.py::test_python_fork_bomb:
    # here RLIMIT_NPROC (per uid: each worker has its own) is what stops it.
    bomb = report["fork_bomb"]
    assert (bomb["verdict"], bomb["exit_code"], bomb["signal"]) == (
        "TIMEOUT",
        None,
        signal.SIGKILL,
    ), bomb
    assert "OVER" not in bomb["stdout"], bomb["stdout"]
    words = bomb["stdout"].split()
    assert words[0] == "peak" and words[2] == "failed", bomb["stdout"]
    assert 16 <= int(words[1]) <= 32
    assert int(words[3]) > 0


def test_root_only_file_is_unreadable(report: dict, subuid_user: SubuidUser) -> None:
    for name, error in (("secret_py", "PermissionError"), ("secret_js", "EACCES")):
        outcome = report[name]
        assert outcome["verdict"] == "RUNTIME_ERROR", outcome
        assert error in outcome["stderr"], outcome
        assert subuid_user.secret not in outcome["stdout"] + outcome["stderr"]


def test_scratch_tmpfs_is_resized_per_request(report: dict) -> None:
    outcome = report["tmpfs"]
    assert outcome["verdict"] == "RUNTIME_ERROR", outcome
    assert "No space left on device" in outcome["stderr"], outcome


def test_no_kill_across_workers(report: dict) -> None:
    outcome = report["cross_kill"]
    targets = report["cross_kill_targets"]
    assert targets, "no other worker was ready to aim at"
    # The kill(-1) kills the worker's own tree (itself excluded: it is PID 1), then it exits 0.
    assert outcome["verdict"] == "OK", outcome
    seen = json.loads(outcome["stdout"])
    assert {seen[t] for t in targets} == {"ProcessLookupError"}, seen
    assert all(report["targets_alive"]), (targets, report["targets_alive"])


def test_the_exit_helper_has_the_programs_own_limits(report: dict) -> None:
    outcome = report["helper_limits"]
    assert outcome["verdict"] == "OK", outcome
    seen = json.loads(outcome["stdout"])
    assert seen["program"]["Max processes"] == ["9", "9"]
    assert seen["program"]["Max data size"] == [str(96 << 20)] * 2
    assert seen["helper"] == seen["program"]


def test_nothing_left_behind(report: dict, subuid_user: SubuidUser) -> None:
    assert report["_leftovers"] == [], report["_leftovers"]
    with open("/proc/mounts") as f:
        assert "sbx-subuid" not in f.read()
    assert not [d for d in os.listdir("/run") if d.startswith("sbx-subuid-pyenv")]


def test_files_out_come_back_whatever_their_modes(report: dict, subuid_user: SubuidUser) -> None:
    """The init opens out/ to the pool (jail/open_out.py): files the program shut to others,
    in folders it shut, come back; symlinks and a FIFO do not, and what a symlink points at
    (readable by the pool's own user only) never appears."""
    py = report["files_out_py"]
    assert (py["verdict"], py["stdout"]) == ("OK", "written\n"), py["stderr"]
    assert py["files"] == {
        "deep/er/nested.txt": "nested",
        "plain.txt": "plain",
        "private.txt": "private",
    }
    js = report["files_out_js"]
    assert (js["verdict"], js["stdout"]) == ("OK", "written\n"), js["stderr"]
    assert js["files"] == {"js.txt": "from node", "shut/inner.txt": "inner"}
    for seen in (py, js):
        assert seen["files_truncated"] is False
        assert subuid_user.pool_only not in json.dumps(seen)


def test_files_out_skip_names_that_are_not_utf8(report: dict) -> None:
    seen = report["files_out_names"]
    assert (seen["verdict"], seen["stdout"]) == ("OK", "written\n"), seen["stderr"]
    assert (seen["files"], seen["files_truncated"]) == ({"ok.txt": "ok"}, False)


def test_files_out_past_the_names_looked_at_is_truncated(report: dict) -> None:
    seen = report["files_out_many"]
    made = f"made {OUT_MAX_ENTRIES + 2000}\n"
    assert (seen["verdict"], seen["stdout"]) == ("OK", made), seen["stderr"]
    assert (seen["files"], seen["files_truncated"]) == ({}, True)


def test_egress_works_in_subuid_mode(report: dict) -> None:
    for runtime in ("python", "javascript"):
        seen = report[f"egress_{runtime}"]
        assert seen["stdout"] == "through the proxy\n", seen["stderr"]
        (entry,) = seen["egress"]
        assert (entry["host"], entry["allowed"], entry["connections"]) == (
            "site.example.test",
            True,
            1,
        )
