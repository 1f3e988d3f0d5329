"""The cgroup v2 tests, as the host sees them: one host test per test function of guest/,
passing only if every case of it ran and passed in the VM (a guest skip is a failure here).
The guest's whole output comes with any failure.

Which functions exist is read from guest/'s source (ast), so a guest test that is never
reported (a collection error, a crash of the guest) fails here instead of vanishing.
"""

from __future__ import annotations

import ast
import os

import pytest

from .conftest import GuestSession

GUEST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest")


def guest_tests() -> list[tuple[str, str]]:
    found = []
    for module in sorted(os.listdir(GUEST_DIR)):
        if not (module.startswith("test_") and module.endswith(".py")):
            continue
        with open(os.path.join(GUEST_DIR, module)) as f:
            tree = ast.parse(f.read(), module)
        found += [
            (module, node.name)
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        ]
    return found


@pytest.mark.parametrize(
    ("module", "function"), guest_tests(), ids=[f"{m[:-3]}::{f}" for m, f in guest_tests()]
)
def test_in_guest(guest_session: GuestSession, module: str, function: str) -> None:
    cases = guest_session.cases_of(module, function)
    assert cases, f"{module}::{function} was not run in the guest\n{guest_session.run.report()}"
    bad = [c for c in cases if c.outcome != "passed"]
    assert not bad, (
        "\n\n".join(
            f"{c.module}::{c.name} {c.outcome.upper()} in the guest:\n{c.details}" for c in bad
        )
        + f"\n\n{guest_session.run.report()}"
    )


def test_the_guest_runs_cgroup_v2_only(guest_session: GuestSession) -> None:
    """Debian's stock kernel, every controller on the unified hierarchy, no v1 mount."""
    guest = guest_session.run.guest
    assert guest.get("release") == guest_session.manifest["kernel_release"], guest
    assert "cgroup_no_v1=all" in str(guest.get("cmdline")).split(), guest
    assert guest.get("cgroup_mounts") == ["cgroup2 /sys/fs/cgroup"], guest
    assert {"memory", "pids", "cpu"} <= set(str(guest.get("controllers")).split()), guest


def test_the_guest_session_passed(guest_session: GuestSession) -> None:
    """pytest's own exit status in the guest: also catches what no test function carries
    (a session fixture's teardown, the leftover check of tests/conftest.py)."""
    run = guest_session.run
    assert run.rc == 0, run.report()
