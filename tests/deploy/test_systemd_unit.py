"""deploy/systemd/sandboxd.service: what the daemon relies on (a delegated cgroup, the drain
before the kill) and its settings, read by the daemon's own settings code. What Delegate=yes
gives the daemon (its cgroup, marked trusted.delegate) is run for real on a cgroup v2 kernel in
tests/cgroup_v2 (guest/test_v2_path.py); systemd itself is not started by any test."""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile

import pytest

from sandboxd import settings
from sandboxd.tenants import add_tenant

UNIT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "deploy",
    "systemd",
    "sandboxd.service",
)


def _sections(path: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: [Section], Key=Value lines (a key may repeat), # comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    with open(path) as f:
        for line in f.read().splitlines():
            if not line.strip() or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            key, sep, value = line.partition("=")
            assert sep and key.strip() == key, line
            current.setdefault(key, []).append(value)
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    sections = _sections(UNIT)
    assert list(sections) == ["Unit", "Service", "Install"]
    return sections["Service"]


def test_the_cgroup_is_delegated_and_the_daemon_drains_before_the_kill(
    service: dict[str, list[str]],
) -> None:
    assert service["Delegate"] == ["yes"]
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the daemon only: it drains
    drain = settings.Settings().drain_grace_s
    assert float(service["TimeoutStopSec"][0]) > drain
    assert shlex.split(service["ExecStart"][0])[1:] == ["serve"]
    assert "User" not in service  # root: the root jail mode


def test_every_variable_is_a_valid_setting(service: dict[str, list[str]]) -> None:
    env = dict(line.split("=", 1) for line in service["Environment"])
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    with tempfile.TemporaryDirectory(prefix="sandboxd-deploy-") as tmp:
        tenants = os.path.join(tmp, "tenants.toml")
        add_tenant(tenants, "acme")
        assert env["SANDBOXD_TENANTS"] == "/etc/sandboxd/tenants.toml"
        values = settings.from_args(parser.parse_args([]), {**env, "SANDBOXD_TENANTS": tenants})
    assert values.listen == env["SANDBOXD_LISTEN"] == "0.0.0.0:50051"
    assert values.metrics_port == int(env["SANDBOXD_METRICS_PORT"])
