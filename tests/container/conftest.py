"""The sandboxd image under podman, run as docs/operations.md "Running in a container" says (no
--privileged), on published loopback ports. Session-scoped: one build, one container."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sandboxd.tenants import add_tenant

from .podman import CACHE_DIR, Built, Podman, ensure_packages

# podman's default seccomp profile, the base `sandboxd seccomp-profile` reads by default.
PODMAN_SECCOMP = "/usr/share/containers/seccomp.json"
SERVING_TIMEOUT_S = 60.0
SANDBOXD_UID = 10001


@dataclass(frozen=True)
class Running:
    name: str
    target: str  # 127.0.0.1:PORT, published to the container's 50051
    metrics_url: str
    api_key: str
    start_to_serving_s: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def podman() -> Podman:
    ensure_packages()
    return Podman()


@pytest.fixture(scope="session")
def seccomp_profile(podman: Podman) -> str:
    """The profile docs/operations.md says to make: `sandboxd seccomp-profile` from podman's default."""
    path = os.path.join(CACHE_DIR, "sandboxd-seccomp.json")
    subprocess.run(
        [sys.executable, "-m", "sandboxd", "seccomp-profile", "--base", PODMAN_SECCOMP, "-o", path],
        check=True,
    )
    return path


@pytest.fixture(scope="session")
def run_flags(seccomp_profile: str) -> tuple[str, ...]:
    """Exactly the flags docs/operations.md documents (besides the ports and the tenants mount)."""
    return (
        "--security-opt", "systempaths=unconfined",
        "--security-opt", f"seccomp={seccomp_profile}",
    )  # fmt: skip


@pytest.fixture(scope="session")
def image(podman: Podman) -> Built:
    podman.ensure_base()
    built = podman.ensure_image()
    print(f"\nimage {built.image}: {built.size_bytes / 1e6:.0f} MB, build {built.build_s:.1f} s")
    return built


@pytest.fixture(scope="session")
def tenants_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-container-") as tmp:
        etc = os.path.join(tmp, "etc")
        os.mkdir(etc)
        key = add_tenant(os.path.join(etc, "tenants.toml"), "acme")
        with open(os.path.join(tmp, "key"), "w") as f:
            f.write(key)
        for path in (etc, os.path.join(etc, "tenants.toml")):
            os.chown(path, SANDBOXD_UID, SANDBOXD_UID)
        yield tmp


def health(target: str, service: str = "") -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandboxd",
            "health",
            "--target",
            target,
            "--timeout",
            "1",
            "--service",
            service,
        ],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="session")
def container(
    podman: Podman, image: Built, tenants_dir: str, run_flags: tuple[str, ...]
) -> Iterator[Running]:
    name = f"sandboxd-test-{os.getpid()}"
    port, metrics = free_port(), free_port()
    start = time.monotonic()
    podman.run(
        "run", "--detach", "--name", name, *run_flags,
        "-p", f"127.0.0.1:{port}:50051", "-p", f"127.0.0.1:{metrics}:9090",
        "-v", f"{tenants_dir}/etc:/etc/sandboxd:ro",
        image.image,
    )  # fmt: skip
    try:
        target = f"127.0.0.1:{port}"
        while health(target) != "SERVING":
            if time.monotonic() - start > SERVING_TIMEOUT_S:
                logs = podman.run("logs", name, check=False)
                pytest.fail(f"not SERVING in {SERVING_TIMEOUT_S} s:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        print(f"\ncontainer start -> SERVING: {elapsed:.2f} s")
        with open(os.path.join(tenants_dir, "key")) as f:
            key = f.read().strip()
        yield Running(name, target, f"http://127.0.0.1:{metrics}/metrics", key, elapsed)
    finally:
        podman.run("rm", "--force", "--time", "10", name, check=False)
