"""Where no cgroup hierarchy is writable (an unprivileged container), the pool says so loudly
and falls back to rlimits: executions still run, still bounded."""

from __future__ import annotations

import logging

import pytest
from helpers import run

from sandboxd_pool import Limits, Pool, PoolConfig, Runtime, Verdict


def test_fallback_is_announced_and_still_bounds(
    tmp_path: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sandboxd_pool")
    config = PoolConfig(
        warm_workers_per_runtime=1, runtimes=(Runtime.PYTHON,), cgroup_root=str(tmp_path)
    )
    with Pool(config) as pool:
        assert pool.cgroups.version == 0
        assert "no writable cgroup hierarchy" in pool.cgroup_warning
        assert "falling back to rlimits" in pool.cgroup_warning
        assert "cgroup v1 lacks controllers" in pool.cgroup_warning
        assert pool.cgroup_warning in caplog.text

        ok = run(pool, Runtime.PYTHON, "print(6 * 7)")
        assert ok.verdict is Verdict.OK, ok
        assert ok.stdout == b"42\n"

        # RLIMIT_DATA bounds the allocation: the program gets MemoryError, not the machine.
        balloon = run(
            pool,
            Runtime.PYTHON,
            "b = bytearray(400 * 1024 * 1024)\nprint('allocated')",
            limits=Limits(memory_bytes=128 * 1024 * 1024),
        )
        assert balloon.verdict is Verdict.RUNTIME_ERROR, balloon
        assert b"MemoryError" in balloon.stderr
        assert b"allocated" not in balloon.stdout

        spin = run(pool, Runtime.PYTHON, "while True: pass", limits=Limits(cpu_time_ms=1000))
        assert spin.verdict is Verdict.CPU_TIME_LIMIT, spin
