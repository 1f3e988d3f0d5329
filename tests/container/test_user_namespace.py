"""The image in a user namespace of 65536 ids, as a Kubernetes pod with `hostUsers: false`
has (podman `--uidmap 0:200000:65536`), with the pod's other grants (`--cap-drop ALL
--cap-add SETUID,SETGID`, `--read-only`): the image's own subordinate ids work there, without
any file mounted over /etc/subuid or /etc/subgid. A range outside the namespace's ids (the
image's old default) is refused at start, naming a range that fits."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

import pytest

from sandboxd.tenants import add_tenant
from sandboxd_client import Client, Verdict

from .conftest import SANDBOXD_UID, SERVING_TIMEOUT_S, free_port, health
from .podman import Built, Podman

HOST_BASE = 200000  # container id 0 is host id 200000
POD = (
    "--uidmap", f"0:{HOST_BASE}:65536", "--gidmap", f"0:{HOST_BASE}:65536",
    "--cap-drop", "ALL", "--cap-add", "SETUID,SETGID", "--read-only",
)  # fmt: skip


@pytest.fixture(scope="module")
def pod_etc() -> Iterator[tuple[str, str]]:
    """(a directory for /etc/sandboxd owned by the daemon's uid as the namespace maps it, its
    tenant's key)."""
    with tempfile.TemporaryDirectory(prefix="sandboxd-userns-") as tmp:
        etc = os.path.join(tmp, "etc")
        os.mkdir(etc)
        key = add_tenant(os.path.join(etc, "tenants.toml"), "acme")
        for path in (etc, os.path.join(etc, "tenants.toml")):
            os.chown(path, HOST_BASE + SANDBOXD_UID, HOST_BASE + SANDBOXD_UID)
        yield etc, key


def test_serves_both_runtimes_with_the_images_own_subordinate_ids(
    podman: Podman, image: Built, run_flags: tuple[str, ...], pod_etc: tuple[str, str]
) -> None:
    etc, key = pod_etc
    name = f"sandboxd-userns-{os.getpid()}"
    port = free_port()
    podman.run(
        "run", "--detach", "--name", name, *run_flags, *POD,
        "-p", f"127.0.0.1:{port}:50051", "-v", f"{etc}:/etc/sandboxd:ro", image.image,
    )  # fmt: skip
    try:
        target = f"127.0.0.1:{port}"
        deadline = time.monotonic() + SERVING_TIMEOUT_S
        while health(target) != "SERVING":
            if time.monotonic() > deadline:
                logs = podman.run("logs", name, check=False)
                pytest.fail(f"not SERVING in a 65536-id user namespace:\n{logs.stderr}")
            time.sleep(0.1)
        with Client(target, api_key=key) as c:
            for runtime, code in (
                ("python", "print('hello from', 'python')"),
                ("javascript", "console.log('hello from', 'javascript')"),
            ):
                result = c.execute(runtime, code, timeout_s=60)
                assert result.verdict is Verdict.OK, result
                assert result.stdout == f"hello from {runtime}\n".encode()
        logs = podman.run("logs", name, check=False).stderr
        assert "jail mode subuid" in logs and "runs as host uid 20000+n, gid 20000+n" in logs
    finally:
        podman.run("rm", "--force", "--time", "10", name, check=False)


def test_a_range_outside_the_namespace_is_refused_naming_one_that_fits(
    podman: Podman, image: Built, run_flags: tuple[str, ...], pod_etc: tuple[str, str]
) -> None:
    etc, _key = pod_etc
    with tempfile.TemporaryDirectory(prefix="sandboxd-subids-") as tmp:
        subids = os.path.join(tmp, "subids")
        with open(subids, "w") as f:
            f.write("sandboxd:100000:65536\n")
        os.chmod(subids, 0o644)
        out = podman.run(
            "run", "--rm", *run_flags, *POD,
            "-v", f"{subids}:/etc/subuid:ro", "-v", f"{subids}:/etc/subgid:ro",
            "-v", f"{etc}:/etc/sandboxd:ro", image.image,
            check=False, timeout_s=120,
        )  # fmt: skip
    assert out.returncode == 2, out
    errors = [line for line in out.stderr.splitlines() if line.startswith("sandboxd serve: error:")]
    assert len(errors) == 1, out.stderr
    assert "/etc/subuid gives user 'sandboxd' ids 100000-165535" in errors[0]
    assert "this user namespace has only ids 0-65535" in errors[0]
    assert "'sandboxd:20000:4096'" in errors[0]
    assert "Traceback" not in out.stderr
