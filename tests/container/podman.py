"""Podman for the container test: its own storage under /var/cache/sandboxd-test, a local
Debian 12 base made with debootstrap (no registry is reachable), the image built from the
repository's Dockerfile. Base and image are cached, keyed by a hash of their inputs; older
images of ours are removed so they do not pile up."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_DIR = "/var/cache/sandboxd-test"
RUN_ROOT = "/run/sandboxd-test"
PACKAGES = ("podman", "debootstrap", "runc")
BASE = "localhost/debian:bookworm"
IMAGE_REPO = "localhost/sandboxd-test"
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n'
# What the Dockerfile copies (.dockerignore): a change to any of them rebuilds the image.
IMAGE_INPUTS = (
    "Dockerfile",
    ".dockerignore",
    "requirements.lock",
    "pyproject.toml",
    "README.md",
    "pool",
    "client",
    "sandboxd",
)
# Like debian:bookworm-slim: no docs, man pages or translations, no apt caches.
SLIM_DPKG = (
    "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
    "path-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n"
    "path-exclude /usr/share/info/*\n"
)


@dataclass(frozen=True)
class Built:
    image: str
    build_s: float  # 0 when the cached image was used
    size_bytes: int


def ensure_packages() -> None:
    missing = [p for p in PACKAGES if shutil.which(p) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], check=True, env=env)


class Podman:
    def __init__(self) -> None:
        os.makedirs(CACHE_DIR, exist_ok=True)
        self.conf = os.path.join(CACHE_DIR, "containers.conf")
        with open(self.conf, "w") as f:
            f.write(CONTAINERS_CONF)

    def cmd(self, *args: str) -> list[str]:
        return ["podman", "--root", f"{CACHE_DIR}/storage", "--runroot", RUN_ROOT, *args]

    def run(
        self, *args: str, check: bool = True, timeout_s: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cmd(*args),
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "CONTAINERS_CONF": self.conf},
        )

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def ensure_base(self) -> None:
        if self.exists(BASE):
            return
        with tempfile.TemporaryDirectory(prefix="sandboxd-rootfs-", dir=CACHE_DIR) as root:
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", root],
                check=True,
                capture_output=True,
            )
            with open(os.path.join(root, "etc/dpkg/dpkg.cfg.d/slim"), "w") as f:
                f.write(SLIM_DPKG)
            for sub in (
                "var/cache/apt/archives",
                "var/lib/apt/lists",
                "usr/share/doc",
                "usr/share/man",
                "usr/share/locale",
            ):
                subprocess.run(
                    [
                        "find",
                        os.path.join(root, sub),
                        "-mindepth",
                        "1",
                        "-not",
                        "-name",
                        "lock",
                        "-not",
                        "-name",
                        "partial",
                        "-delete",
                    ],
                    check=False,
                )
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(
                self.cmd("import", "-", BASE),
                stdin=tar.stdout,
                check=True,
                capture_output=True,
                env={**os.environ, "CONTAINERS_CONF": self.conf},
            )
            assert tar.wait() == 0

    def ensure_image(self) -> Built:
        tag = f"{IMAGE_REPO}:{_inputs_hash()}"
        build_s = 0.0
        if not self.exists(tag):
            start = time.monotonic()
            args = [
                "build",
                "--format",
                "docker",
                "--network",
                "host",
                "--build-arg",
                f"BASE_IMAGE={BASE}",
                "-t",
                tag,
            ]
            ca = "/etc/ssl/certs/ca-certificates.crt"
            if os.path.isfile(ca):  # a TLS-intercepting proxy's CA, if the host trusts one
                args += ["--secret", f"id=ca,src={ca}"]
            self.run(*args, REPO, timeout_s=1200)
            build_s = time.monotonic() - start
        for line in self.run(
            "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO
        ).stdout.split():
            if line != tag:
                self.run("rmi", "--force", line, check=False)
        self.run("image", "prune", "--force", check=False)
        size = int(self.run("image", "inspect", tag, "--format", "{{.Size}}").stdout.strip())
        return Built(tag, build_s, size)


def _inputs_hash() -> str:
    digest = hashlib.sha256(CONTAINERS_CONF.encode() + SLIM_DPKG.encode())
    for top in IMAGE_INPUTS:
        path = os.path.join(REPO, top)
        files = (
            [path]
            if os.path.isfile(path)
            else sorted(
                os.path.join(d, f)
                for d, dirs, fs in os.walk(path)
                for f in fs
                if "__pycache__" not in d and ".egg-info" not in d
            )
        )
        for name in files:
            digest.update(os.path.relpath(name, REPO).encode())
            with open(name, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:16]
