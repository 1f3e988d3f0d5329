"""On the host: one VM boot per session runs every test of guest/ on a real cgroup v2 kernel;
each host test reports one guest test's result (tests/cgroup_v2/test_in_guest.py).

In the VM (GUEST_MARKER set by guest/init.py's request): guest/ is what is collected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from .assets import CHECKOUT_MOUNT, REPO, ensure_assets
from .guest_env import GUEST_ENV, GUEST_MARKER
from .vm import QEMU, GuestRun, results_path, run_in_guest

IN_GUEST = os.environ.get(GUEST_MARKER) == "1"
collect_ignore = [] if IN_GUEST else ["guest"]

# The guest's whole pytest run is killed past this (a hang must not hold CI): the suite takes
# about two minutes in the VM here.
GUEST_TIMEOUT_S = 600
HOST_TOOLS = (QEMU, "debootstrap", "mke2fs", "dpkg-deb", "apt-get", "chroot")


@dataclass(frozen=True)
class GuestCase:
    module: str  # file name in guest/, e.g. "test_limits.py"
    name: str  # e.g. "test_memory_balloon_is_memory_limit[js-buffers]"
    outcome: str  # "passed", "failed", "error" or "skipped"
    details: str  # the failure's message and traceback, or the skip reason


@dataclass(frozen=True)
class GuestSession:
    run: GuestRun
    cases: tuple[GuestCase, ...]
    assets_build_s: float
    manifest: Mapping[str, str]

    def cases_of(self, module: str, function: str) -> list[GuestCase]:
        return [c for c in self.cases if c.module == module and c.name.split("[", 1)[0] == function]


def _ensure_host_tools() -> None:
    """qemu, debootstrap, ...: scripts/install-system-deps.sh installs what is missing."""
    if any(shutil.which(tool) is None for tool in HOST_TOOLS):
        subprocess.run(
            ["bash", os.path.join(REPO, "scripts", "install-system-deps.sh")], check=True
        )
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    assert not missing, f"scripts/install-system-deps.sh did not provide {missing}"


def _parse_junit(xml: bytes) -> tuple[GuestCase, ...]:
    cases = []
    for case in ET.fromstring(xml).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1] + ".py"
        outcome, details = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                details = f"{found.get('message', '')}\n{found.text or ''}"
                break
        cases.append(GuestCase(module, case.get("name", ""), outcome, details))
    return tuple(cases)


@pytest.fixture(scope="session")
def guest_session() -> GuestSession:
    if IN_GUEST:
        pytest.fail("the VM does not boot another VM")
    _ensure_host_tools()
    start = time.monotonic()
    assets = ensure_assets()
    junit = "junit.xml"
    argv = [
        "python3", "-m", "pytest",
        "-p", "no:cacheprovider",  # the checkout is read-only in the guest
        "-q", "--durations=8",
        f"--junitxml={results_path(junit)}",
        f"{CHECKOUT_MOUNT}/tests/cgroup_v2/guest",
    ]  # fmt: skip
    run = run_in_guest(assets, argv, GUEST_ENV, timeout_s=GUEST_TIMEOUT_S)
    built = f"built in {assets.build_s:.1f} s" if assets.build_s else "cached"
    print(
        f"\ncgroup v2 VM: assets {built} ({assets.directory}), boot to power-off "
        f"{run.boot_to_exit_s:.1f} s, session {time.monotonic() - start:.1f} s; kernel "
        f"{assets.manifest['kernel_package']} {assets.manifest['kernel_version']}",
        file=sys.stderr,
    )
    if junit not in run.files:
        pytest.fail(f"the guest wrote no test report:\n{run.report()}")
    return GuestSession(run, _parse_junit(run.files[junit]), assets.build_s, assets.manifest)
