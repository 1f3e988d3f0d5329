"""The image for real: podman, no --privileged, the documented flags; the Python client's
smoke, hostile cases (pollution, network) and a metrics scrape through the published port;
the startup preflight's message when a flag is missing."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import pytest
from hostile_programs import FORK_LIMITS, PY_FORK_BOMB
from pollution_programs import CHECK, CLEAN_ENV, EXPECTED, HELPER, JS, POLLUTE, PY

from sandboxd_client import Client, InvalidRequest, Limits, Verdict
from sandboxd_pool import Runtime

from .conftest import Running
from .podman import Built, Podman

RUNTIMES = pytest.mark.parametrize("runtime", [PY, JS], ids=["python", "javascript"])
HELLO = {PY: "print('hello', 6 * 7)", JS: "console.log('hello', 6 * 7)"}
CONNECT = {
    PY: "import errno, socket\ntry:\n    socket.create_connection(('{host}', {port}), timeout=2)\n"
    "    print('CONNECTED')\nexcept OSError as e:\n    print('FAILED', errno.errorcode[e.errno])\n",
    JS: "require('net').connect({{host: '{host}', port: {port}}})"
    ".on('connect', () => {{ console.log('CONNECTED'); process.exit(0); }})"
    ".on('error', e => console.log('FAILED', e.code));",
}


def client(running: Running) -> Client:
    return Client(running.target, api_key=running.api_key)


@RUNTIMES
def test_hello(container: Running, runtime: Runtime) -> None:
    with client(container) as c:
        r = c.execute(runtime.value, HELLO[runtime])
    assert r.verdict is Verdict.OK, r
    assert r.stdout == b"hello 42\n"


def test_error_status(container: Running) -> None:
    with client(container) as c, pytest.raises(InvalidRequest) as info:
        c.execute("python", "print(1)", env={"A=B": "1"})
    assert [v.field for v in info.value.violations] == ["env['A=B']"]
    assert info.value.violations[0].description == "a name must be non-empty and contain no '='"


@RUNTIMES
def test_pollution_does_not_carry_over(container: Running, runtime: Runtime) -> None:
    with client(container) as c:
        for _ in range(3):
            r = c.execute(runtime.value, POLLUTE[runtime])
            assert r.verdict is Verdict.OK and r.stdout == b"A-ran\n", r
            r = c.execute(runtime.value, CHECK[runtime], env=CLEAN_ENV, files=HELPER[runtime])
            assert r.verdict is Verdict.OK, r
            assert json.loads(r.stdout) == EXPECTED[runtime]


@RUNTIMES
@pytest.mark.parametrize("port", [50051, 9090])
def test_no_network(container: Running, runtime: Runtime, port: int) -> None:
    # The daemon's own gRPC and metrics ports inside the container, on its loopback.
    with client(container) as c:
        r = c.execute(runtime.value, CONNECT[runtime].format(host="127.0.0.1", port=port))
    assert r.verdict is Verdict.OK, r
    # The worker's loopback is its own namespace's (up, for the egress proxy's port): the
    # daemon's ports are not there, nothing listens on them.
    assert r.stdout == b"FAILED ECONNREFUSED\n", r


def test_metrics(container: Running) -> None:
    with client(container) as c:
        assert c.execute("python", "pass").verdict is Verdict.OK
    with urllib.request.urlopen(container.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert 'sandboxd_executions_total{runtime="python",verdict="OK"}' in text
    assert 'sandboxd_runtime_healthy{runtime="python"} 1.0' in text


# -- hostile basics through the image: subuid mode, no writable cgroup (the rlimit fallback) --

# Files of the daemon inside the container that no execution may read: the tenants file (the
# API keys' hashes), the daemon's code and its entry point, the subordinate-id files.
DAEMON_FILES = (
    "/etc/sandboxd/tenants.toml",
    "/etc/sandboxd",
    "/usr/local/lib/python3.11/dist-packages/sandboxd/server.py",
    "/usr/local/lib/python3.11/dist-packages/sandboxd_pool/pool.py",
    "/usr/local/bin/sandboxd",
    "/etc/subuid",
)
READ_FILES = {
    PY: "import errno, json, sys\nout = {}\nfor p in sys.argv[1:]:\n    try:\n"
    "        out[p] = 'READ ' + open(p, 'rb').read(64).hex()\n    except OSError as e:\n"
    "        out[p] = errno.errorcode[e.errno]\nprint(json.dumps(out))\n",
    JS: "const fs = require('fs'); const out = {};\n"
    "for (const p of process.argv.slice(2)) {\n"
    "  try { out[p] = 'READ ' + fs.readFileSync(p).subarray(0, 64).toString('hex'); }\n"
    "  catch (e) { out[p] = e.code; }\n}\nconsole.log(JSON.stringify(out));\n",
}


@RUNTIMES
def test_the_daemons_files_are_not_readable(container: Running, runtime: Runtime) -> None:
    with client(container) as c:
        r = c.execute(runtime.value, READ_FILES[runtime], args=list(DAEMON_FILES))
    assert r.verdict is Verdict.OK, r
    assert json.loads(r.stdout) == {path: "ENOENT" for path in DAEMON_FILES}


def test_the_tenants_file_is_there_for_the_daemon(podman: Podman, container: Running) -> None:
    """The positive control of the test above: the file exists in the container and holds
    the tenant, so ENOENT in a worker is the jail's doing."""
    out = podman.run("exec", container.name, "cat", "/etc/sandboxd/tenants.toml")
    assert "\n[tenants.acme]\n" in out.stdout, out


def test_memory_balloon_is_a_memory_error_under_the_rlimit(container: Running) -> None:
    # No memory cgroup in the container: RLIMIT_DATA makes the allocation fail inside the
    # program (RUNTIME_ERROR with MemoryError), never an OOM kill (docs/architecture.md "cgroups").
    with client(container) as c:
        r = c.execute(
            "python",
            "b = bytearray(400 * 1024 * 1024)\nprint('allocated')",
            limits=Limits(memory_bytes=128 * 1024 * 1024),
        )
    assert (r.verdict, r.exit_code, r.signal) == (Verdict.RUNTIME_ERROR, 1, None), r
    assert r.stderr.endswith(b"MemoryError\n"), r.stderr[-500:]
    assert r.stdout == b""


def test_fork_bomb_is_held_by_rlimit_nproc_and_timed_out(container: Running) -> None:
    """tests/jail/test_resources.py's fork bomb: RLIMIT_NPROC per worker uid stops it."""
    with client(container) as c:
        r = c.execute(
            "python",
            PY_FORK_BOMB,
            args=[str(FORK_LIMITS.max_processes)],
            limits=Limits(max_processes=FORK_LIMITS.max_processes, wall_time_ms=3000),
        )
    assert (r.verdict, r.exit_code, r.signal) == (Verdict.TIMEOUT, None, signal.SIGKILL), r
    assert b"OVER" not in r.stdout, r.stdout
    words = r.stdout.split()
    assert words[0] == b"peak" and words[2] == b"failed", r.stdout
    assert 16 <= int(words[1]) <= FORK_LIMITS.max_processes
    assert int(words[3]) > 0


@RUNTIMES
def test_wall_time_overrun_is_a_timeout(container: Running, runtime: Runtime) -> None:
    code = {
        PY: "import time\nprint('ready', flush=True)\ntime.sleep(30)\nprint('woke')",
        JS: "console.log('ready'); setTimeout(() => console.log('woke'), 30000);",
    }[runtime]
    with client(container) as c:
        r = c.execute(runtime.value, code, limits=Limits(wall_time_ms=1000))
    assert (r.verdict, r.exit_code, r.signal) == (Verdict.TIMEOUT, None, signal.SIGKILL), r
    assert r.stdout == b"ready\n"
    assert r.usage.wall_time_us >= 1_000_000


def refused(podman: Podman, image: Built, *flags: str) -> str:
    """Run the image with `flags` (no tenants file, loopback); it must exit 2 at once (the
    preflight runs before the pool). Its stderr."""
    start = time.monotonic()
    out = podman.run("run", "--rm", *flags, "-e", "SANDBOXD_LISTEN=127.0.0.1:50051",
                     "-e", "SANDBOXD_TENANTS=", image.image, check=False, timeout_s=60)  # fmt: skip
    assert time.monotonic() - start < 30, "the refusal must not wait for anything"
    assert out.returncode == 2, out
    return out.stderr


def test_masked_proc_is_refused_at_once_with_the_flag(
    podman: Podman, image: Built, seccomp_profile: str
) -> None:
    err = refused(podman, image, "--security-opt", f"seccomp={seccomp_profile}")
    assert "--security-opt systempaths=unconfined" in err
    assert "procMount: Unmasked" in err
    assert "sethostname" not in err


def test_default_seccomp_profile_is_refused_with_the_flag(podman: Podman, image: Built) -> None:
    # podman's own profile allows sethostname only with CAP_SYS_ADMIN in the container.
    err = refused(podman, image, "--security-opt", "systempaths=unconfined")
    assert "sethostname only with CAP_SYS_ADMIN" in err
    assert "--security-opt seccomp=PROFILE" in err and "`sandboxd seccomp-profile`" in err
    assert "systempaths" not in err


def test_with_no_flags_every_problem_is_named(podman: Podman, image: Built) -> None:
    err = refused(podman, image)
    assert "--security-opt systempaths=unconfined" in err
    assert "--security-opt seccomp=PROFILE" in err


def test_no_new_privileges_is_refused_with_the_flag(
    podman: Podman, image: Built, run_flags: tuple[str, ...]
) -> None:
    err = refused(podman, image, *run_flags, "--security-opt", "no-new-privileges")
    assert "no-new-privileges" in err


def test_healthcheck_command(podman: Podman, container: Running) -> None:
    out = podman.run("healthcheck", "run", container.name, check=False)
    assert out.returncode == 0, out
