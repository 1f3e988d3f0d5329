"""Hostile programs against the jail's filesystem: host files, other processes, /sys, devices,
system directories and symlink tricks (SECURITY.md "escape to the host", docs/architecture.md mount namespace).

Every program reports what it saw as JSON on stdout; the test asserts the exact verdict and the
exact errno of each attempt, and that no byte of a host secret appears in stdout or stderr.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SANDBOX_PIDS, run

import sandboxd_pool
from sandboxd_pool import Limits, Outcome, Pool, PoolConfig, Runtime, Verdict

LIMITS = Limits(wall_time_ms=5_000)
RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)

# The entries of the jail's /dev (docs/architecture.md: null, zero, random, urandom; plus the usual
# fd symlinks and the scratch-backed shm directory).
JAIL_DEV = {"null", "zero", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm"}
JAIL_ENV_KEYS = {
    Runtime.PYTHON: {"PATH", "HOME", "LANG", "PYTHONUTF8"},
    Runtime.JAVASCRIPT: {"PATH", "HOME", "LANG"},
}


def _report(outcome: Outcome) -> dict:
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.exit_code == 0
    return json.loads(outcome.stdout)


# Both runtimes get the same probe primitives so every test reads the same way:
#   attempt(kind, path, ...) -> "OK" | "<ERRNO NAME>"
PY_PRELUDE = textwrap.dedent(
    """
    import errno, json, os, sys
    def attempt(fn, *a):
        try:
            r = fn(*a)
            return "OK" if r is None or not isinstance(r, (bytes, str)) else r
        except OSError as e:
            return errno.errorcode[e.errno]
    def read(p):
        with open(p, "rb") as f:
            return "READ:" + f.read().decode("latin-1")
    def write(p):
        with open(p, "wb") as f:
            f.write(b"pwned")
    """
)

JS_PRELUDE = textwrap.dedent(
    """
    const fs = require('fs');
    function attempt(fn) {
      try { const r = fn(); return typeof r === 'string' ? r : 'OK'; }
      catch (e) { if (!e.code) throw e; return e.code; }
    }
    const read = (p) => 'READ:' + fs.readFileSync(p, 'latin1');
    const write = (p) => fs.writeFileSync(p, 'pwned');
    """
)


@pytest.fixture(scope="module")
def host_secret() -> Iterator[tuple[str, str]]:
    """A world-readable secret in a world-traversable host directory: only the jail's mount
    namespace (not file permissions) stands between the sandbox and its content."""
    directory = tempfile.mkdtemp(prefix="sandboxd-jail-secret-")
    os.chmod(directory, 0o755)
    secret = "sandboxd-host-secret-" + secrets.token_hex(16)
    path = os.path.join(directory, "secret.txt")
    with open(path, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o644)
    yield path, secret
    shutil.rmtree(directory, ignore_errors=True)


def _escape_paths(path: str) -> list[str]:
    """Ways a program might name a host path from inside the jail."""
    return [
        path,
        os.path.dirname(path),
        "/proc/1/root" + path,
        "/proc/self/root" + path,
        "/proc/1/root/../../.." + path,
        "/proc/self/cwd/../../.." + path,
        "/work/../../.." + path,
        "/dev/fd/../../.." + path,
        "/work/escape-link",  # created by the program: -> /proc/1/root/../../../<path>
    ]


@RUNTIMES
def test_host_secret_file_never_reachable(
    pool: Pool, runtime: Runtime, host_secret: tuple[str, str]
) -> None:
    path, secret = host_secret
    # The host's shadow file is one of the secrets probed: its lines must never come out. A
    # host without one would make that half of the check empty, so it is a precondition.
    assert os.path.isfile("/etc/shadow"), "this test needs the host's /etc/shadow (Debian has one)"
    shadow = Path("/etc/shadow").read_text()
    assert [line for line in shadow.splitlines() if line.strip()], "/etc/shadow is empty"
    probes = [
        *_escape_paths(path),
        "/etc/shadow",
        "/etc/gshadow",
        "/root/.bashrc",
        os.path.join(os.path.dirname(sandboxd_pool.__file__), "worker.py"),  # the daemon's code
    ]
    if runtime is Runtime.PYTHON:
        code = PY_PRELUDE + textwrap.dedent(
            """
            os.symlink("/proc/1/root/../../.." + sys.argv[1], "/work/escape-link")
            print(json.dumps({p: attempt(read, p) for p in sys.argv[2:]}))
            """
        )
    else:
        code = JS_PRELUDE + textwrap.dedent(
            """
            const [secret, ...probes] = process.argv.slice(2);
            fs.symlinkSync('/proc/1/root/../../..' + secret, '/work/escape-link');
            const out = {};
            for (const p of probes) out[p] = attempt(() => read(p));
            console.log(JSON.stringify(out));
            """
        )
    outcome = run(pool, runtime, code, args=(path, *probes), limits=LIMITS)
    assert secret.encode() not in outcome.stdout + outcome.stderr
    for line in shadow.splitlines():
        if line.strip():
            assert line.encode() not in outcome.stdout + outcome.stderr
    seen = _report(outcome)
    # A directory read gives EISDIR only if it exists; every probe must be plainly absent. PID 1
    # is the worker's init, which is not dumpable: its /proc entries are closed to the program.
    assert seen == {
        p: "EACCES" if p.startswith("/proc/1/") or p == "/work/escape-link" else "ENOENT"
        for p in probes
    }


@RUNTIMES
def test_host_home_and_daemon_source_are_not_mounted(pool: Pool, runtime: Runtime) -> None:
    """No host home directory shows, even for an interpreter installed under one (pyenv here):
    a prefix of its own is mounted at /opt/python, a node outside /usr at /opt/node/bin."""
    config = PoolConfig()
    pool_src = os.path.dirname(os.path.abspath(sandboxd_pool.__file__))
    prefix = os.path.dirname(os.path.dirname(config.python_path))
    own_prefix = not prefix.startswith("/usr")
    expected: dict[str, object] = {"/root": "ENOENT", "/home": "ENOENT"}
    absent = [pool_src, "/work/main", os.path.join(os.path.dirname(pool_src), "pyproject.toml")]
    absent += [prefix, config.node_path] if prefix.startswith("/root") else []
    expected.update({p: "ENOENT" for p in absent if not p.startswith("/usr")})
    # The bootstraps and, for the Python template, the jail package: read-only, no secret.
    expected["/opt"] = sorted(
        [
            "sandboxd",
            "sandboxd-lib",
            *(["python"] if runtime is Runtime.PYTHON and own_prefix else []),
        ]
    )
    boot_dir = os.path.join(pool_src, "_in_worker")
    expected["/opt/sandboxd"] = sorted(os.listdir(boot_dir))
    expected["/opt/sandboxd-lib"] = ["jail"]
    expected["/work"] = ["main.py" if runtime is Runtime.PYTHON else "main.js", "out"]

    dirs = sorted(expected)
    if runtime is Runtime.PYTHON:
        code = PY_PRELUDE + textwrap.dedent(
            """
            out = {}
            for p in sys.argv[1:]:
                try:
                    out[p] = sorted(os.listdir(p))
                except NotADirectoryError:
                    out[p] = attempt(os.stat, p)
                except OSError as e:
                    out[p] = errno.errorcode[e.errno]
            print(json.dumps(out))
            """
        )
    else:
        code = JS_PRELUDE + textwrap.dedent(
            """
            const out = {};
            for (const p of process.argv.slice(2)) {
              try { out[p] = fs.readdirSync(p).sort(); }
              catch (e) { out[p] = e.code === 'ENOTDIR' ? attempt(() => { fs.statSync(p); }) : e.code; }
            }
            console.log(JSON.stringify(out));
            """
        )
    seen = _report(run(pool, runtime, code, args=tuple(dirs), limits=LIMITS))
    assert seen == expected
    assert "worker.py" not in seen["/opt/sandboxd"]  # only the bootstraps, not the engine


def _host_paths_the_test_knows() -> list[str]:
    """Host paths whose appearance inside a worker would tell where things are on the host and
    who runs them: this checkout, the engine, the interpreters' prefixes, the home directory."""
    config = PoolConfig()
    paths = {
        str(Path(__file__).resolve().parents[2]),  # the checkout
        os.path.dirname(os.path.abspath(sandboxd_pool.__file__)),
        os.path.dirname(os.path.dirname(config.python_path)),
        os.path.dirname(os.path.realpath(sys.executable)),
        sys.prefix,
        os.path.expanduser("~"),
    }
    if not config.node_path.startswith("/usr/"):
        paths.add(os.path.dirname(config.node_path))
    # /usr and / are the jail's own system paths too; only the distinctive ones count.
    return sorted(p for p in paths if p not in ("/", "/usr") and not p.startswith("/usr/"))


@RUNTIMES
def test_mount_table_names_no_host_path(pool: Pool, runtime: Runtime) -> None:
    """/proc/self/mountinfo lists each mount's source root, which for a bind is the host path
    it came from (the checkout's _in_worker and jail, the interpreter's prefix). Every layer is
    an overlay of its own now: nothing in the table, nor in the interpreter's own idea of where
    it lives, names a host path."""
    code = {
        Runtime.PYTHON: "import sys\nprint(open('/proc/self/mountinfo').read())\n"
        "print(sys.executable, sys.prefix, *sys.path)",
        Runtime.JAVASCRIPT: "const fs = require('fs');\n"
        "console.log(fs.readFileSync('/proc/self/mountinfo', 'utf8'));\n"
        "console.log(process.execPath, ...module.paths);",
    }[runtime]
    outcome = run(pool, runtime, code, limits=LIMITS)
    assert outcome.verdict is Verdict.OK, outcome
    text = outcome.stdout.decode()
    assert " /opt/sandboxd " in text  # the table was read
    leaked = [p for p in _host_paths_the_test_knows() if p in text]
    assert leaked == [], text


@RUNTIMES
def test_etc_is_the_jails_own(pool: Pool, runtime: Runtime) -> None:
    """/etc holds the jail's own minimal files: no host account, group, host name or shadow."""
    host_users = {line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()}
    if runtime is Runtime.PYTHON:
        code = PY_PRELUDE + textwrap.dedent(
            """
            names = ["passwd", "group", "hosts", "hostname", "shadow", "sudoers", "machine-id"]
            print(json.dumps({n: attempt(read, "/etc/" + n) for n in names}))
            """
        )
    else:
        code = JS_PRELUDE + textwrap.dedent(
            """
            const names = ['passwd', 'group', 'hosts', 'hostname', 'shadow', 'sudoers', 'machine-id'];
            const out = {};
            for (const n of names) out[n] = attempt(() => read('/etc/' + n));
            console.log(JSON.stringify(out));
            """
        )
    seen = _report(run(pool, runtime, code, limits=LIMITS))
    assert seen["shadow"] == seen["sudoers"] == seen["machine-id"] == "ENOENT"
    assert seen["hostname"] == "READ:sandbox\n"
    passwd = seen["passwd"].removeprefix("READ:").splitlines()
    group = seen["group"].removeprefix("READ:").splitlines()
    assert [line.split(":")[0] for line in passwd] == ["root", "sandbox"]
    assert [line.split(":")[0] for line in group] == ["root", "sandbox"]
    assert "sandbox:x:1000:1000::/work:" in seen["passwd"]
    assert len(host_users) > 2  # the host has accounts the jail does not show
    # the jail's own file, exactly: nothing of the host's (its name included, whatever it is)
    assert seen["hosts"] == "READ:127.0.0.1 localhost sandbox\n::1 localhost\n"


@RUNTIMES
def test_proc_shows_only_the_workers_own_processes(pool: Pool, runtime: Runtime) -> None:
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import json, os, subprocess
            child = subprocess.Popen(["/usr/bin/sleep", "5"])
            pids = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
            cmd = open("/proc/self/cmdline", "rb").read().split(b"\\0")
            env = open("/proc/self/environ", "rb").read().split(b"\\0")
            child.kill(); child.wait()
            print(json.dumps({"pids": pids, "child": child.pid, "self": os.getpid(),
                              "cmd": [c.decode() for c in cmd if c],
                              "env": [e.decode() for e in env if e]}))
            """
        )
    else:
        code = textwrap.dedent(
            """
            const fs = require('fs');
            const child = require('child_process').spawn('/usr/bin/sleep', ['5']);
            const pids = fs.readdirSync('/proc').filter((d) => /^\\d+$/.test(d)).map(Number).sort((a, b) => a - b);
            const cmd = fs.readFileSync('/proc/self/cmdline', 'utf8').split('\\0').filter(Boolean);
            const env = fs.readFileSync('/proc/self/environ', 'utf8').split('\\0').filter(Boolean);
            child.kill('SIGKILL');
            console.log(JSON.stringify({ pids, child: child.pid, self: process.pid, cmd, env }));
            """
        )
    seen = _report(run(pool, runtime, code, limits=LIMITS))
    # PID 1 is the worker's init (jail/init.py); the program is its child, PID 2 (and in
    # Python, PID 3 its exit helper).
    assert seen["self"] == 2
    assert seen["pids"] == sorted([*SANDBOX_PIDS[runtime], seen["child"]])
    # The program is this worker's own runtime: a fork of the Python template, or node itself
    boot = (
        "/opt/sandboxd/python_template.py"
        if runtime is Runtime.PYTHON
        else "/opt/sandboxd/node_boot.js"
    )
    assert seen["cmd"][-1] == boot
    env = dict(e.split("=", 1) for e in seen["env"])
    assert set(env) == JAIL_ENV_KEYS[runtime]
    assert env["HOME"] == "/work"
    assert env["PATH"] == "/usr/bin:/bin"


@RUNTIMES
def test_no_sys_and_only_harmless_devices(pool: Pool, runtime: Runtime) -> None:
    probes = ["/sys", "/sys/fs/cgroup", "/sys/kernel", "/dev/sda", "/dev/vda", "/dev/mem",
              "/dev/kmsg", "/dev/tty", "/dev/net/tun", "/dev/fuse", "/dev/kvm", "/proc/sysrq-trigger"]  # fmt: skip
    if runtime is Runtime.PYTHON:
        code = PY_PRELUDE + textwrap.dedent(
            """
            out = {p: attempt(os.stat, p) for p in sys.argv[1:]}
            out["/dev"] = sorted(os.listdir("/dev"))
            out["/dev/urandom"] = len(open("/dev/urandom", "rb").read(16))
            out["mknod char 1,1 (mem)"] = attempt(os.mknod, "/work/mem", 0o20600, os.makedev(1, 1))
            out["mknod block 8,0 (sda)"] = attempt(os.mknod, "/work/sda", 0o60600, os.makedev(8, 0))
            out["mknod in /dev"] = attempt(os.mknod, "/dev/sda", 0o60600, os.makedev(8, 0))
            out["kallsyms"] = [l.split()[0] for l in open("/proc/kallsyms").readlines()[:50]]
            print(json.dumps(out))
            """
        )
    else:
        code = JS_PRELUDE + textwrap.dedent(
            """
            const out = {};
            for (const p of process.argv.slice(2)) out[p] = attempt(() => { fs.statSync(p); });
            out['/dev'] = fs.readdirSync('/dev').sort();
            const fd = fs.openSync('/dev/urandom', 'r');
            out['/dev/urandom'] = fs.readSync(fd, Buffer.alloc(16));
            out['kallsyms'] = fs.readFileSync('/proc/kallsyms', 'utf8').split('\\n').slice(0, 50).map((l) => l.split(' ')[0]);
            console.log(JSON.stringify(out));
            """
        )
    seen = _report(run(pool, runtime, code, args=tuple(probes), limits=LIMITS))
    for p in probes:
        assert seen[p] == "ENOENT", (p, seen[p])
    assert set(seen["/dev"]) == JAIL_DEV
    assert seen["/dev/urandom"] == 16
    # kernel addresses are hidden from the sandbox (kptr_restrict for an unprivileged reader)
    assert seen["kallsyms"] and set(seen["kallsyms"]) == {"0" * 16}
    if runtime is Runtime.PYTHON:
        assert seen["mknod char 1,1 (mem)"] == "EPERM"
        assert seen["mknod block 8,0 (sda)"] == "EPERM"
        assert seen["mknod in /dev"] == "EROFS"


# path -> errno of creating/overwriting it from inside
SYSTEM_WRITES = {
    "/usr/bin/evil": "EROFS",
    "/usr/lib/evil.so": "EROFS",
    "/etc/evil": "EROFS",
    "/etc/passwd": "EROFS",
    "/evil": "EROFS",
    "/opt/sandboxd/evil.py": "EROFS",
    "/proc/self/root/evil": "EROFS",
    "/proc/1/root/evil": "EACCES",  # the init's: not dumpable, closed to the program
    "/proc/sys/kernel/hostname": "EACCES",
    "/proc/sys/vm/drop_caches": "EACCES",
}


@RUNTIMES
def test_system_dirs_are_read_only(pool: Pool, runtime: Runtime) -> None:
    bootstrap = "/opt/sandboxd/" + (
        "python_boot.py" if runtime is Runtime.PYTHON else "node_boot.js"
    )
    expected = dict(SYSTEM_WRITES, **{bootstrap: "EROFS"})
    if runtime is Runtime.PYTHON:
        code = PY_PRELUDE + textwrap.dedent(
            """
            out = {p: attempt(write, p) for p in sys.argv[1:]}
            out["mkdir /usr/evil"] = attempt(os.mkdir, "/usr/evil")
            out["chmod /usr/bin/env"] = attempt(os.chmod, "/usr/bin/env", 0o777)
            out["unlink /etc/hosts"] = attempt(os.unlink, "/etc/hosts")
            out["rename main.py over /usr/bin/env"] = attempt(os.rename, "/work/main.py", "/usr/bin/env")
            out["hard link /etc/passwd"] = attempt(os.link, "/etc/passwd", "/work/passwd")
            print(json.dumps(out))
            """
        )
    else:
        code = JS_PRELUDE + textwrap.dedent(
            """
            const out = {};
            for (const p of process.argv.slice(2)) out[p] = attempt(() => write(p));
            out['mkdir /usr/evil'] = attempt(() => { fs.mkdirSync('/usr/evil'); });
            out['chmod /usr/bin/env'] = attempt(() => { fs.chmodSync('/usr/bin/env', 0o777); });
            out['unlink /etc/hosts'] = attempt(() => { fs.unlinkSync('/etc/hosts'); });
            out['rename main.py over /usr/bin/env'] = attempt(() => { fs.renameSync('/work/main.js', '/usr/bin/env'); });
            out['hard link /etc/passwd'] = attempt(() => { fs.linkSync('/etc/passwd', '/work/passwd'); });
            console.log(JSON.stringify(out));
            """
        )
    seen = _report(run(pool, runtime, code, args=tuple(expected), limits=LIMITS))
    assert seen == {
        **expected,
        "mkdir /usr/evil": "EROFS",
        "chmod /usr/bin/env": "EROFS",
        "unlink /etc/hosts": "EROFS",
        "rename main.py over /usr/bin/env": "EXDEV",
        "hard link /etc/passwd": "EXDEV",
    }
    # and the next worker's bootstrap is untouched
    hello = run(pool, runtime, "print('hi')" if runtime is Runtime.PYTHON else "console.log('hi')")
    assert (hello.verdict, hello.stdout) == (Verdict.OK, b"hi\n")


@RUNTIMES
def test_proc_root_symlinks_stay_inside(pool: Pool, runtime: Runtime) -> None:
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import json, os
            os.symlink("/proc/self/root/../../../../..", "/work/up")
            os.symlink("/proc/self/root/..", "/work/up2")
            def ident(p):
                st = os.stat(p)
                return [st.st_dev, st.st_ino]
            print(json.dumps({
                "root": ident("/"),
                "/proc/self/root": ident("/proc/self/root"),
                "/proc/self/root/../..": ident("/proc/self/root/../.."),
                "/work/up": ident("/work/up"),
                "/work/up2": ident("/work/up2"),
                "ls /work/up": sorted(os.listdir("/work/up")),
                "ls /": sorted(os.listdir("/")),
                "readlink /proc/self/root": os.readlink("/proc/self/root"),
                "readlink /proc/self/cwd": os.readlink("/proc/self/cwd"),
                "realpath /proc/self/root/../..": os.path.realpath("/proc/self/root/../.."),
            }))
            """
        )
    else:
        code = textwrap.dedent(
            """
            const fs = require('fs');
            fs.symlinkSync('/proc/self/root/../../../../..', '/work/up');
            fs.symlinkSync('/proc/self/root/..', '/work/up2');
            const ident = (p) => { const st = fs.statSync(p); return [st.dev, st.ino]; };
            console.log(JSON.stringify({
              root: ident('/'),
              '/proc/self/root': ident('/proc/self/root'),
              '/proc/self/root/../..': ident('/proc/self/root/../..'),
              '/work/up': ident('/work/up'),
              '/work/up2': ident('/work/up2'),
              'ls /work/up': fs.readdirSync('/work/up').sort(),
              'ls /': fs.readdirSync('/').sort(),
              'readlink /proc/self/root': fs.readlinkSync('/proc/self/root'),
              'readlink /proc/self/cwd': fs.readlinkSync('/proc/self/cwd'),
              'realpath /proc/self/root/../..': fs.realpathSync.native('/proc/self/root/../..'),
            }));
            """
        )
    seen = _report(run(pool, runtime, code, limits=LIMITS))
    for key in ("/proc/self/root", "/proc/self/root/../..", "/work/up", "/work/up2"):
        assert seen[key] == seen["root"], key
    assert seen["ls /work/up"] == seen["ls /"]
    assert "sys" not in seen["ls /"]
    assert seen["readlink /proc/self/root"] == "/"
    assert seen["readlink /proc/self/cwd"] == "/work"
    assert seen["realpath /proc/self/root/../.."] == "/"
