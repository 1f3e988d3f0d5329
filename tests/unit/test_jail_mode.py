"""jail/mode.py: privilege detection, /etc/subuid parsing, and the operator-facing messages."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from sandboxd_pool import JailModeError, PoolConfig
from sandboxd_pool.jail import mode

ROOT_CAPS = "000001ffffffffff"


def _status(tmp_path: Path, cap_eff: str, uid_map: str) -> tuple[str, str]:
    status = tmp_path / "status"
    status.write_text(f"Name:\tpython3\nCapEff:\t{cap_eff}\n")
    umap = tmp_path / "uid_map"
    umap.write_text(uid_map)
    return str(status), str(umap)


def test_privileged_needs_sys_admin_and_setuid_in_the_initial_namespace(tmp_path: Path) -> None:
    initial = "         0          0 4294967295\n"
    assert mode.privileged(*_status(tmp_path, ROOT_CAPS, initial)) == ""
    # podman's default capability set: CAP_SETUID but no CAP_SYS_ADMIN
    why = mode.privileged(*_status(tmp_path, "00000000800405fb", initial))
    assert "lacks CAP_SYS_ADMIN" in why and "CAP_SETUID" not in why
    assert "lacks CAP_SYS_ADMIN and CAP_SETUID" in mode.privileged(
        *_status(tmp_path, "0000000000000000", initial)
    )
    nested = "0 100000 65536\n"
    assert mode.privileged(*_status(tmp_path, ROOT_CAPS, nested)) == (
        "not in the initial user namespace"
    )


def test_subid_lines_by_name_or_uid(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("# comment\nalice:100000:65536\nbroken line\n1001:300000:10\nbob:x:1\n")
    assert mode.read_subid_range(str(f), 1000, "alice") == mode.SubidRange(100000, 65536)
    assert mode.read_subid_range(str(f), 1001, "carol") == mode.SubidRange(300000, 10)
    assert mode.read_subid_range(str(f), 1002, "bob") is None
    assert mode.read_subid_range(str(tmp_path / "missing"), 0, "root") is None


def _me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def test_subuid_mode_reads_both_files(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text(f"{_me()}:100000:65536\n")
    (tmp_path / "subgid").write_text(f"{os.getuid()}:200000:100\n")
    got = mode.resolve(
        "subuid",
        3_000_000,
        20,
        subuid_file=str(tmp_path / "subuid"),
        subgid_file=str(tmp_path / "subgid"),
        helpers=("/bin/sh", "/bin/sh"),
    )
    assert got == mode.JailMode("subuid", "configured", 100000, 200000, 100)


def test_a_missing_line_names_the_file_and_the_line_to_add(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("someone-else:100000:65536\n")
    (tmp_path / "subgid").write_text("")
    with pytest.raises(JailModeError) as e:
        mode.resolve(
            "subuid",
            0,
            20,
            subuid_file=str(tmp_path / "subuid"),
            subgid_file=str(tmp_path / "subgid"),
        )
    message = str(e.value)
    assert f"{tmp_path / 'subuid'} has no line for user {_me()!r}" in message
    assert f"'{_me()}:200000:65536'" in message
    assert "20 subordinate ids" in message


def test_a_short_range_is_refused(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text(f"{_me()}:100000:65536\n")
    (tmp_path / "subgid").write_text(f"{_me()}:100000:8\n")
    with pytest.raises(JailModeError, match="subgid gives only 8 ids"):
        mode.resolve(
            "subuid",
            0,
            20,
            subuid_file=str(tmp_path / "subuid"),
            subgid_file=str(tmp_path / "subgid"),
        )


def test_missing_helpers_say_which_package(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text(f"{_me()}:100000:65536\n")
    with pytest.raises(JailModeError, match="apt-get install uidmap"):
        mode.resolve(
            "subuid",
            0,
            20,
            subuid_file=str(tmp_path / "subuid"),
            subgid_file=str(tmp_path / "subuid"),
            helpers=(str(tmp_path / "newuidmap"), "/bin/sh"),
        )


def test_root_mode_keeps_uid_base() -> None:
    if mode.privileged():
        pytest.fail("the suite runs as root: root mode must be available here")
    assert mode.resolve("auto", 3_000_000, 20) == mode.JailMode(
        "root", "auto: privileged", 3_000_000, 3_000_000, 4096
    )


def test_config_validates_the_mode_and_counts_slots() -> None:
    with pytest.raises(ValueError, match="jail_mode"):
        PoolConfig(jail_mode="rootless")
    config = PoolConfig(warm_workers_per_runtime=3, max_concurrent_executions=5)
    assert config.worker_slots_needed == 2 * 3 + 5
    with pytest.raises(JailModeError, match="must be one of"):
        mode.resolve("bogus", 0, 1)


POD_MAP = "         0     200000      65536\n"  # a `hostUsers: false` pod, a rootless container


def _resolve_in(tmp_path: Path, subids: str, id_map: str, needed: int = 20) -> mode.JailMode:
    (tmp_path / "subids").write_text(f"{_me()}:{subids}\n")
    (tmp_path / "id_map").write_text(id_map)
    return mode.resolve(
        "subuid",
        0,
        needed,
        subuid_file=str(tmp_path / "subids"),
        subgid_file=str(tmp_path / "subids"),
        helpers=("/bin/sh", "/bin/sh"),
        id_maps=(str(tmp_path / "id_map"), str(tmp_path / "id_map")),
    )


def test_id_maps_are_read_as_ranges_of_inside_ids(tmp_path: Path) -> None:
    f = tmp_path / "uid_map"
    f.write_text("         0     200000      1000\n      1000     300000     64536\n")
    got = mode.read_id_map(str(f))
    assert got == [mode.SubidRange(0, 1000), mode.SubidRange(1000, 64536)]
    assert mode.mapped_from(500, got) == 65036  # across both extents
    assert mode.mapped_from(70000, got) == 0
    assert mode.read_id_map(str(tmp_path / "missing")) == []


def test_a_range_outside_the_user_namespace_is_refused_naming_a_fitting_one(
    tmp_path: Path,
) -> None:
    """The image's old default (100000:65536) in a pod: no id of it exists there."""
    with pytest.raises(JailModeError) as e:
        _resolve_in(tmp_path, "100000:65536", POD_MAP)
    message = str(e.value)
    assert f"gives user {_me()!r} ids 100000-165535" in message
    assert "this user namespace has only ids 0-65535" in message
    assert "so 0 of them can be mapped and the pool needs 20" in message
    assert f"'{_me()}:20000:4096'" in message


def test_a_range_inside_the_user_namespace_is_used(tmp_path: Path) -> None:
    assert _resolve_in(tmp_path, "20000:4096", POD_MAP) == mode.JailMode(
        "subuid", "configured", 20000, 20000, 4096
    )


def test_only_the_part_of_a_range_that_exists_is_used(tmp_path: Path) -> None:
    assert _resolve_in(tmp_path, "65000:4096", POD_MAP).slots == 536
    with pytest.raises(JailModeError, match="so 536 of them can be mapped and the pool needs 600"):
        _resolve_in(tmp_path, "65000:4096", POD_MAP, needed=600)


def test_the_initial_namespace_maps_every_id(tmp_path: Path) -> None:
    initial = "         0          0 4294967295\n"
    assert _resolve_in(tmp_path, "100000:65536", initial).slots == 4096
