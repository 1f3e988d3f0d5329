"""The cgroup parent's name (PoolConfig.cgroup_parent, `--cgroup-parent`): one plain directory
name, checked where it is given, so that it can never point outside the hierarchy's root."""

from __future__ import annotations

import argparse

import pytest

from sandboxd.settings import Settings, SettingsError, add_arguments, from_args
from sandboxd_pool import PoolConfig
from sandboxd_pool.jail.cgroups import CgroupSetup

# "daemon": in a delegated cgroup v2 subtree the daemon's own processes sit in <subtree>/daemon
BAD_NAMES = [
    "",
    ".",
    "..",
    "../escape",
    "a/b",
    "/abs",
    "-flag",
    ".hidden",
    "x" * 65,
    "sp ace",
    "daemon",
]
GOOD_NAMES = ["sandboxd", "sandboxd-tenant_a.2", "S" * 64, "0", "daemons", "my-daemon", "Daemon"]


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv), env or {})


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_that_is_not_one_plain_directory_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cgroup_parent must be one directory name"):
        PoolConfig(cgroup_parent=name)
    with pytest.raises(ValueError, match="is not one plain directory name"):
        CgroupSetup.detect("/nonexistent-cgroup-root", name)
    if name:  # an empty flag value means "not given"
        with pytest.raises(SettingsError, match=r"--cgroup-parent: .* is not one directory name"):
            parse([f"--cgroup-parent={name}"])


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_plain_names_are_accepted(name: str) -> None:
    assert PoolConfig(cgroup_parent=name).cgroup_parent == name
    assert parse(["--cgroup-parent", name]).cgroup_parent == name
    assert parse([], {"SANDBOXD_CGROUP_PARENT": name}).cgroup_parent == name


def test_the_default_is_sandboxd() -> None:
    assert PoolConfig().cgroup_parent == "sandboxd"
    assert parse([]).cgroup_parent == "sandboxd"
