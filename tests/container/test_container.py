"""The image for real: podman, no --privileged, the documented flags; the Python client's
smoke, hostile cases (pollution, network) and a metrics scrape through the published port;
the startup preflight's message when a flag is missing."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from pollution_programs import CHECK, CLEAN_ENV, EXPECTED, HELPER, JS, POLLUTE, PY

from sandboxd_client import Client, InvalidRequest, Verdict
from sandboxd_pool import Runtime

from .conftest import Running
from .podman import Built, Podman

RUNTIMES = pytest.mark.parametrize("runtime", [PY, JS], ids=["python", "javascript"])
HELLO = {PY: "print('hello', 6 * 7)", JS: "console.log('hello', 6 * 7)"}
CONNECT = {
    PY: "import socket\ntry:\n    socket.create_connection(('{host}', {port}), timeout=2)\n"
    "    print('CONNECTED')\nexcept OSError as e:\n    print('FAILED', e.errno)\n",
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
    with client(container) as c, pytest.raises(InvalidRequest):
        c.execute("python", "print(1)", env={"A=B": "1"})


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
    assert r.stdout.startswith(b"FAILED"), r


def test_metrics(container: Running) -> None:
    with client(container) as c:
        assert c.execute("python", "pass").verdict is Verdict.OK
    with urllib.request.urlopen(container.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert 'sandboxd_executions_total{runtime="python",verdict="OK"}' in text
    assert 'sandboxd_runtime_healthy{runtime="python"} 1.0' in text


def test_start_to_serving_is_quick(container: Running) -> None:
    assert container.start_to_serving_s < 30


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
