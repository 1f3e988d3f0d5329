"""An environment baked into a derived image (deploy/environments/Dockerfile, the one
docs/environments.md shows: `FROM sandboxd` and one RUN), run as the documented container:
the daemon finds the build, a tenant given the environment imports its package in the jail,
another tenant is refused, pip is gone from the image again and the build is read-only."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator

import pytest

from sandboxd.tenants import add_tenant
from sandboxd_client import Client, PermissionDenied, Verdict

from .conftest import SANDBOXD_UID, SERVING_TIMEOUT_S, Running, free_port, health
from .podman import REPO, Built, Podman

DOCKERFILE = os.path.join(REPO, "deploy", "environments", "Dockerfile")
IMAGE_REPO = "localhost/sandboxd-test-environments"
ENVIRONMENTS = (
    '[environments.tables]\nruntime = "python"\npackages = ["tabulate==0.9.0"]\n'
    'preload = ["tabulate"]\n'
)
PLAIN_KEY: dict[str, str] = {}  # container name -> the key of tenant "plain"
PROGRAM = (
    "import sys, tabulate\n"
    "table = tabulate.tabulate([[1, 'one'], [2, 'two']], headers=['n', 'name'])\n"
    "open('out/table.txt', 'w').write(table)\n"
    "print('tabulate' in sys.modules, tabulate.__file__)\n"
)


@pytest.fixture(scope="module")
def environments_image(podman: Podman, image: Built) -> Iterator[str]:
    with open(DOCKERFILE, "rb") as f:
        digest = hashlib.sha256(image.image.encode() + f.read() + ENVIRONMENTS.encode())
    tag = f"{IMAGE_REPO}:{digest.hexdigest()[:16]}"
    for old in podman.run(
        "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO
    ).stdout.split():
        if old != tag:  # only our own older tags: the storage is shared
            podman.run("rmi", old, check=False)
    if not podman.exists(tag):
        with tempfile.TemporaryDirectory(prefix="sandboxd-envimage-") as context:
            with open(os.path.join(context, "environments.toml"), "w") as f:
                f.write(ENVIRONMENTS)
            args = ["build", "--format", "docker", "--network", "host", "-f", DOCKERFILE]
            args += ["--build-arg", f"SANDBOXD_IMAGE={image.image}", "-t", tag]
            ca = "/etc/ssl/certs/ca-certificates.crt"
            if os.path.isfile(ca):
                args += ["--secret", f"id=ca,src={ca}"]
            podman.run(*args, context, timeout_s=1200)
    yield tag


@pytest.fixture(scope="module")
def with_environments(
    podman: Podman, environments_image: str, run_flags: tuple[str, ...]
) -> Iterator[Running]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-container-env-") as tmp:
        etc = os.path.join(tmp, "etc")
        os.mkdir(etc)
        tenants = os.path.join(etc, "tenants.toml")
        key = add_tenant(tenants, "acme", environments=["tables"])
        name = f"sandboxd-test-env-{os.getpid()}"
        PLAIN_KEY[name] = add_tenant(tenants, "plain")
        for path in (etc, tenants):
            os.chown(path, SANDBOXD_UID, SANDBOXD_UID)
        port = free_port()
        start = time.monotonic()
        podman.run(
            "run", "--detach", "--name", name, *run_flags,
            "-p", f"127.0.0.1:{port}:50051", "-v", f"{etc}:/etc/sandboxd:ro",
            environments_image,
        )  # fmt: skip
        try:
            target = f"127.0.0.1:{port}"
            while health(target) != "SERVING":
                if time.monotonic() - start > SERVING_TIMEOUT_S:
                    logs = podman.run("logs", name, check=False)
                    pytest.fail(f"not SERVING:\n{logs.stdout}{logs.stderr}")
                time.sleep(0.1)
            yield Running(name, target, "", key, time.monotonic() - start)
        finally:
            podman.run("rm", "--force", "--time", "10", name, check=False)


def test_the_baked_environment_runs_in_the_container(with_environments: Running) -> None:
    with Client(with_environments.target, api_key=with_environments.api_key) as c:
        r = c.execute("python", PROGRAM, environment="tables")
    assert r.verdict is Verdict.OK, r.stderr.decode()
    assert r.stdout == b"True /opt/environment/tabulate/__init__.py\n"
    # Subuid mode (this container): the worker's init opened out/ to the non-root pool.
    expected = "  n  name\n---  ------\n  1  one\n  2  two"
    assert [(f.path, f.data.decode()) for f in r.files] == [("table.txt", expected)]
    assert health(with_environments.target, "sandboxd.v1.Sandbox/python/tables") == "SERVING"


def test_the_image_keeps_the_build_read_only_and_not_pip(
    podman: Podman, with_environments: Running
) -> None:
    listed = podman.run("exec", with_environments.name, "sandboxd", "environments", "list")
    head, *lock = listed.stdout.splitlines()
    name, runtime, status, directory, *_ = head.split("\t")
    assert (name, runtime, status) == ("tables", "python", "built")
    assert directory.startswith("/var/lib/sandboxd/environments/python-")
    assert lock == ["  tabulate==0.9.0"]
    write = podman.run(
        "exec", "--user", "root", with_environments.name, "find", directory, "-perm", "/222"
    )
    assert write.stdout == ""  # nothing writable, not even by its owner
    pip = podman.run("exec", with_environments.name, "python3", "-m", "pip", check=False)
    assert pip.returncode == 1 and "No module named pip" in pip.stderr


def test_a_tenant_not_given_it_is_refused(with_environments: Running) -> None:
    with (
        Client(with_environments.target, api_key=PLAIN_KEY[with_environments.name]) as c,
        pytest.raises(PermissionDenied) as info,
    ):
        c.execute("python", "import tabulate", environment="tables")
    assert info.value.message == "tenant 'plain' may not use environment 'tables' (allowed: none)"
