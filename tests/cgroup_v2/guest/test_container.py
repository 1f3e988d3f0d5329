"""The daemon in a container on a cgroup v2 host (run inside the VM): the unprivileged setting
the image runs in (guest/container.py: a user namespace, its own cgroup namespace, podman's
default capabilities, subuid jail mode), with the cgroup filesystem mounted read-write
(delegated: real limits) or read-only (every runtime's default: the rlimit fallback, loudly).

Podman itself is not run here: in the emulated guest its start, the image's transfer into the
VM and its storage would cost minutes (docs/development.md, "cgroup v2 in the test suite"); the namespaces,
ids, capabilities and mounts below are what it sets up for `podman run --userns=auto --user 0
--security-opt unmask=/sys/fs/cgroup`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
from e2e.daemon import Daemon, spawn

from sandboxd_client import Client, Limits, Verdict
from sandboxd_pool.jail.cgroups import DAEMON_LEAF

from .conftest import CGROUP2, cgroup_of, cgroup_tree

MiB = 1024 * 1024
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "container.py")
OUTER_UID = 200000  # container uid 0 on the host (the guest)
# podman's default capability set (containers.conf default_capabilities)
PODMAN_CAPS = (
    "+chown,+dac_override,+fowner,+fsetid,+kill,+net_bind_service,+setfcap,+setgid,+setpcap,"
    "+setuid,+sys_chroot"
)
# Subordinate ids of the container's root (as deploy/kubernetes/sandboxd-subids.yaml gives the
# daemon's user): inside the container's 0..65535.
SUBIDS = "root:20000:4096\n"
BALLOON = "b = []\nwhile True: b.append(bytearray(16 << 20))"


@pytest.fixture
def container_cgroup() -> Iterator[str]:
    """The container's cgroup, delegated as runc does for a user-namespaced container on v2:
    the directory and its cgroup.procs, cgroup.subtree_control and cgroup.threads belong to
    the container's root. Removed afterwards, as the runtime does when the container ends."""
    before = cgroup_tree()
    with open(os.path.join(CGROUP2, "cgroup.subtree_control"), "w") as f:
        f.write("+memory +pids +cpu")
    path = os.path.join(CGROUP2, f"container-{os.getpid()}")
    os.mkdir(path)
    for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(path, name), OUTER_UID, OUTER_UID)
    try:
        yield path
    finally:
        for d, _dirs, _files in sorted(os.walk(path), key=lambda e: -len(e[0])):
            os.rmdir(d)
    assert cgroup_tree() == before


@pytest.fixture
def subids() -> Iterator[None]:
    saved = {}
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path) as f:
            saved[path] = f.read()
        with open(path, "a") as f:
            f.write(SUBIDS)
    try:
        yield
    finally:
        for path, text in saved.items():
            with open(path, "w") as f:
                f.write(text)


def _daemon_in(cgroup: str, mode: str) -> Daemon:
    wrapper = [sys.executable, LAUNCHER, cgroup, str(OUTER_UID), mode, "0", PODMAN_CAPS, "--"]
    return spawn(["--listen", "127.0.0.1:0", "--warm-workers", "1"], wrapper=wrapper)


def _hello_both(address: str) -> None:
    with Client(address) as client:
        for runtime, code in (("python", "print('hello')"), ("javascript", "console.log('hello')")):
            r = client.execute(runtime, code, timeout_s=60)
            assert (r.verdict, r.stdout) == (Verdict.OK, b"hello\n"), r


def _stop(daemon: Daemon) -> None:
    rc = daemon.stop()
    assert rc == 0, "".join(daemon.raw_stderr[-40:])


def test_a_delegated_container_cgroup_gives_real_limits(
    container_cgroup: str, subids: None
) -> None:
    daemon = _daemon_in(container_cgroup, "rw")
    try:
        address = daemon.wait_for_log("listening", 180)["address"]
        messages = daemon.log_messages()
        assert "sandboxd: jail mode subuid" in " ".join(messages), daemon.raw_stderr
        placement = (
            "sandboxd: cgroup v2: worker cgroups under /sys/fs/cgroup/sandboxd (this "
            "container's own cgroup, the root of its cgroup namespace); this process moved "
            f"into /sys/fs/cgroup/{DAEMON_LEAF}"
        )
        assert placement in messages, daemon.raw_stderr
        assert not [m for m in messages if "falling back to rlimits" in m], messages
        # seen from the host: the daemon in the container's leaf, nothing in the container's
        # own cgroup, each worker in a cgroup of its own beside the leaf
        name = os.path.basename(container_cgroup)
        assert cgroup_of(daemon.proc.pid) == "/"  # the launcher, outside as podman's conmon
        inner = psutil.Process(daemon.proc.pid).children()
        assert [cgroup_of(p.pid) for p in inner] == [f"/{name}/{DAEMON_LEAF}"]
        with open(os.path.join(container_cgroup, "cgroup.procs")) as f:
            assert f.read() == ""
        deadline = time.monotonic() + 120
        while len(workers := os.listdir(os.path.join(container_cgroup, "sandboxd"))) < 2:
            assert time.monotonic() < deadline, workers
            time.sleep(0.1)
        _hello_both(address)
        with Client(address) as client:
            balloon = client.execute(
                "python", BALLOON, limits=Limits(memory_bytes=64 * MiB), timeout_s=60
            )
            assert balloon.verdict is Verdict.MEMORY_LIMIT, balloon
            assert balloon.usage.peak_memory_bytes <= 64 * MiB, balloon.usage
            assert b"MemoryError" not in balloon.stderr
    finally:
        _stop(daemon)


def test_a_read_only_container_cgroup_falls_back_to_rlimits_loudly(
    container_cgroup: str, subids: None
) -> None:
    daemon = _daemon_in(container_cgroup, "ro")
    try:
        address = daemon.wait_for_log("listening", 180)["address"]
        warning = [m for m in daemon.log_messages() if "falling back to rlimits" in m]
        assert warning and warning[0].startswith(
            "sandboxd: WARNING: no writable cgroup hierarchy (cgroup v2 at /sys/fs/cgroup (this "
            "container's own cgroup, the root of its cgroup namespace) is not writable "
            "(Read-only file system)); falling back to rlimits"
        ), daemon.log_messages()
        _hello_both(address)
        with Client(address) as client:
            balloon = client.execute(
                "python", BALLOON, limits=Limits(memory_bytes=64 * MiB), timeout_s=60
            )
            assert balloon.verdict is Verdict.RUNTIME_ERROR, balloon  # no OOM kill to count
            assert b"MemoryError" in balloon.stderr
        for made in (DAEMON_LEAF, "sandboxd"):  # nothing was made in the container's cgroup
            assert not os.path.exists(os.path.join(container_cgroup, made))
    finally:
        _stop(daemon)


def test_the_images_non_root_user_is_told_to_run_as_the_containers_root(
    container_cgroup: str,
) -> None:
    """The image's default user (uid 10001) cannot write a cgroup delegated to the container's
    root: the reason names both uids."""
    detect = (
        "from sandboxd_pool.jail.cgroups import CgroupSetup; "
        "s = CgroupSetup.detect(); print(s.version); print(s.reason)"
    )
    done = subprocess.run(
        [sys.executable, LAUNCHER, container_cgroup, str(OUTER_UID), "rw", "10001", PODMAN_CAPS,
         "--", sys.executable, "-c", detect],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    version, reason = done.stdout.splitlines()
    assert version == "0"
    assert reason == (
        "cgroup v2 at /sys/fs/cgroup (this container's own cgroup, the root of its cgroup "
        "namespace) is not writable (Permission denied; its files belong to uid 0, this "
        "process runs as uid 10001)"
    )
