"""The cgroup v2 file logic of jail/cgroups.py on a plain temp dir: which files set_limits
writes and how facts() parses what the kernel would have written. No kernel involved."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxd_pool.jail.cgroups import (
    UNIFIED,
    CgroupFacts,
    CgroupSetup,
    WorkerCgroup,
    enter_self,
)

MiB = 1024 * 1024

MEMORY_EVENTS = "low 0\nhigh 12\nmax 40\noom 3\noom_kill 2\noom_group_kill 0\n"
CPU_STAT = (
    "usage_usec 2500123\nuser_usec 2000000\nsystem_usec 500123\n"
    "nr_periods 10\nnr_throttled 4\nthrottled_usec 7000\n"
)
PIDS_EVENTS = "max 5\n"


# The interface files a v2 cgroup directory has from its creation, with the kernel's defaults:
# cgroup files are never created by a write (the engine opens them without O_CREAT).
KERNEL_FILES = {
    "cgroup.kill": "",
    "cgroup.procs": "",
    "cpu.max": "max 100000",
    "memory.max": "max",
    "memory.swap.max": "max",
    "pids.max": "max",
}


@pytest.fixture
def cg(tmp_path: Path) -> WorkerCgroup:
    for name, text in KERNEL_FILES.items():
        (tmp_path / name).write_text(text)
    return WorkerCgroup(version=2, paths={UNIFIED: str(tmp_path)})


def read(path: Path, name: str) -> str:
    return (path / name).read_text()


def write(path: Path, name: str, text: str) -> None:
    (path / name).write_text(text)


class TestSetLimits:
    def test_writes_memory_swap_pids_and_cpu(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        cg.set_limits(256 * MiB, 64, cpu_cores=1.5)
        assert read(tmp_path, "memory.max") == str(256 * MiB)
        assert read(tmp_path, "memory.swap.max") == "0"
        assert read(tmp_path, "pids.max") == "64"
        assert read(tmp_path, "cpu.max") == "150000 100000"

    def test_fractional_core(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        cg.set_limits(64 * MiB, 4, cpu_cores=0.25)
        assert read(tmp_path, "cpu.max") == "25000 100000"

    def test_no_cpu_quota_leaves_cpu_max_alone(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        write(tmp_path, "cpu.max", "max 100000")
        cg.set_limits(64 * MiB, 4)
        assert read(tmp_path, "cpu.max") == "max 100000"

    def test_writes_only_to_the_unified_dir(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        cg.set_limits(64 * MiB, 4, cpu_cores=1)
        assert sorted(os.listdir(tmp_path)) == sorted(KERNEL_FILES)  # no v1 file, nothing new

    def test_a_kernel_without_swap_accounting_gets_no_swap_file(
        self, cg: WorkerCgroup, tmp_path: Path
    ) -> None:
        (tmp_path / "memory.swap.max").unlink()
        cg.set_limits(64 * MiB, 4)
        assert read(tmp_path, "memory.max") == str(64 * MiB)
        assert not (tmp_path / "memory.swap.max").exists()

    def test_a_missing_required_file_raises(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        (tmp_path / "pids.max").unlink()
        with pytest.raises(FileNotFoundError):
            cg.set_limits(64 * MiB, 4)

    def test_rewriting_replaces_the_previous_values(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        cg.set_limits(512 * MiB, 1024, cpu_cores=2)
        cg.set_limits(64 * MiB, 8, cpu_cores=1)
        assert read(tmp_path, "memory.max") == str(64 * MiB)
        assert read(tmp_path, "pids.max") == "8"
        assert read(tmp_path, "cpu.max") == "100000 100000"

    def test_missing_cgroup_dir_raises(self, tmp_path: Path) -> None:
        gone = WorkerCgroup(version=2, paths={UNIFIED: str(tmp_path / "gone")})
        with pytest.raises(FileNotFoundError):
            gone.set_limits(64 * MiB, 4)


class TestFacts:
    def test_parses_every_file(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        write(tmp_path, "memory.events", MEMORY_EVENTS)
        write(tmp_path, "memory.peak", "123456789\n")
        write(tmp_path, "cpu.stat", CPU_STAT)
        write(tmp_path, "pids.events", PIDS_EVENTS)
        assert cg.facts() == CgroupFacts(
            peak_memory_bytes=123456789,
            oom_kills=2,  # oom_kill, not oom (3) nor oom_group_kill
            cpu_time_ns=2500123 * 1000,
            pids_limit_hits=5,
        )

    def test_cpu_time_alone(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        write(tmp_path, "cpu.stat", CPU_STAT)
        assert cg.cpu_time_ns() == 2_500_123_000

    def test_no_cpu_stat_is_zero_cpu(self, cg: WorkerCgroup) -> None:
        assert cg.cpu_time_ns() == 0

    def test_kernel_without_memory_peak_reports_zero_peak(
        self, cg: WorkerCgroup, tmp_path: Path
    ) -> None:
        # memory.peak appeared in Linux 5.19: older kernels do not have the file.
        write(tmp_path, "memory.events", MEMORY_EVENTS)
        write(tmp_path, "cpu.stat", CPU_STAT)
        write(tmp_path, "pids.events", PIDS_EVENTS)
        facts = cg.facts()
        assert facts.peak_memory_bytes == 0
        assert facts.oom_kills == 2
        assert facts.cpu_time_ns == 2_500_123_000
        assert facts.pids_limit_hits == 5

    def test_quiet_worker(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        write(tmp_path, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
        write(tmp_path, "memory.peak", "4096\n")
        write(tmp_path, "cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n")
        write(tmp_path, "pids.events", "max 0\n")
        assert cg.facts() == CgroupFacts(peak_memory_bytes=4096)

    def test_empty_dir_gives_zero_facts(self, cg: WorkerCgroup) -> None:
        assert cg.facts() == CgroupFacts()

    def test_removed_cgroup_gives_zero_facts(self, tmp_path: Path) -> None:
        gone = WorkerCgroup(version=2, paths={UNIFIED: str(tmp_path / "gone")})
        assert gone.facts() == CgroupFacts()
        assert gone.cpu_time_ns() == 0

    def test_unknown_and_malformed_lines_are_ignored(
        self, cg: WorkerCgroup, tmp_path: Path
    ) -> None:
        write(tmp_path, "memory.events", "oom_kill 4\nnew_counter 7\ngarbage\nsplit in three\n")
        write(tmp_path, "pids.events", "max 1\nmax.imposed 9\n")
        write(tmp_path, "cpu.stat", "usage_usec 10\ncore_sched.force_idle_usec 3\n")
        facts = cg.facts()
        assert facts.oom_kills == 4
        assert facts.pids_limit_hits == 1
        assert facts.cpu_time_ns == 10_000


class TestProcsAndKill:
    def test_entry_goes_through_cgroup_procs(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        # v2 has no per-thread "tasks" file: a process moves itself via cgroup.procs.
        write(tmp_path, "cgroup.procs", "")
        fds = cg.open_for_entry()
        assert len(fds) == 1
        enter_self(tuple(fds))
        assert read(tmp_path, "cgroup.procs") == "0"
        assert not (tmp_path / "tasks").exists()

    def test_kill_all_writes_cgroup_kill(self, cg: WorkerCgroup, tmp_path: Path) -> None:
        cg.kill_all()
        assert read(tmp_path, "cgroup.kill") == "1"

    def test_kill_all_on_a_removed_cgroup_is_quiet(self, tmp_path: Path) -> None:
        WorkerCgroup(version=2, paths={UNIFIED: str(tmp_path / "gone")}).kill_all()
        # quiet, and nothing made: no directory, no cgroup.kill written anywhere
        assert list(tmp_path.iterdir()) == []


class TestCreateAndRemove:
    def test_create_then_remove(self, tmp_path: Path) -> None:
        cg = CgroupSetup(version=2, parents={UNIFIED: str(tmp_path)}).worker("z1-7")
        assert cg == WorkerCgroup(version=2, paths={UNIFIED: str(tmp_path / "z1-7")})
        cg.create()
        assert (tmp_path / "z1-7").is_dir()
        assert cg.remove()
        assert not (tmp_path / "z1-7").exists()

    def test_remove_of_a_missing_cgroup_succeeds(self, tmp_path: Path) -> None:
        assert WorkerCgroup(version=2, paths={UNIFIED: str(tmp_path / "gone")}).remove()


HOST_PARENTS = tuple(f"/sys/fs/cgroup/{c}/sandboxd" for c in ("memory", "pids", "cpu", "cpuacct"))


@pytest.fixture
def host_cgroups_restored() -> Iterator[None]:
    """Should detection wander off to the host's hierarchy, remove what it created there."""
    before = {p for p in HOST_PARENTS if os.path.isdir(p)}
    yield
    for path in HOST_PARENTS:
        if path not in before:
            with contextlib.suppress(OSError):
                os.rmdir(path)


class TestDetect:
    def test_forced_v2_root_lacking_controllers_is_refused_with_the_reason(
        self, tmp_path: Path, host_cgroups_restored: None
    ) -> None:
        # `root` forces a hierarchy: an unusable forced v2 root means no cgroups (the rlimit
        # fallback, announced), not a silent switch to whatever the host has mounted.
        write(tmp_path, "cgroup.controllers", "cpuset cpu io memory\n")
        setup = CgroupSetup.detect(str(tmp_path))
        assert setup.version == 0, setup
        assert setup.parents == {}
        assert "lacks controllers pids" in setup.reason
        assert not (tmp_path / "sandboxd").exists()
