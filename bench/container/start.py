"""Container start to SERVING: how long the image takes from `podman run` until its health
service answers SERVING (docs/operations.md "Running in a container"). A measurement, not a test (tests
never assert speed): `python -m bench.container.start -n 5`.

It uses tests/container's podman setup (its own storage, the debootstrap base, the image built
from this checkout's Dockerfile, cached) and runs the image exactly as tests/container does:
the documented flags, a tenants file, published loopback ports. Prints each start and the
median.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from container.conftest import (  # noqa: E402 - after the path to tests/
    PODMAN_SECCOMP,
    SANDBOXD_UID,
    free_port,
    health,
)
from container.podman import CACHE_DIR, Podman, ensure_packages  # noqa: E402

from sandboxd.tenants import add_tenant  # noqa: E402

TIMEOUT_S = 120.0


def start_once(podman: Podman, image: str, etc: str, profile: str) -> float:
    name = f"sandboxd-bench-{os.getpid()}"
    port = free_port()
    start = time.monotonic()
    podman.run(
        "run", "--detach", "--name", name,
        "--security-opt", "systempaths=unconfined", "--security-opt", f"seccomp={profile}",
        "-p", f"127.0.0.1:{port}:50051", "-v", f"{etc}:/etc/sandboxd:ro", image,
    )  # fmt: skip
    try:
        while health(f"127.0.0.1:{port}") != "SERVING":
            if time.monotonic() - start > TIMEOUT_S:
                raise SystemExit(f"not SERVING within {TIMEOUT_S} s")
            time.sleep(0.05)
        return time.monotonic() - start
    finally:
        podman.run("rm", "--force", "--time", "10", name, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="starts to measure (default 5)")
    args = parser.parse_args()
    ensure_packages()
    podman = Podman()
    podman.ensure_base()
    built = podman.ensure_image()
    profile = os.path.join(CACHE_DIR, "sandboxd-seccomp.json")
    subprocess.run(
        [sys.executable, "-m", "sandboxd", "seccomp-profile", "--base", PODMAN_SECCOMP,
         "-o", profile],
        check=True,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sandboxd-bench-container-") as tmp:
        etc = os.path.join(tmp, "etc")
        os.mkdir(etc)
        add_tenant(os.path.join(etc, "tenants.toml"), "bench")
        for path in (etc, os.path.join(etc, "tenants.toml")):
            os.chown(path, SANDBOXD_UID, SANDBOXD_UID)
        times = []
        for i in range(args.n):
            times.append(start_once(podman, built.image, etc, profile))
            print(f"start {i + 1}: {times[-1]:.2f} s to SERVING", flush=True)
    print(f"image {built.image}: median start to SERVING {statistics.median(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
