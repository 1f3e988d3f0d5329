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


# Each way of holding memory that RLIMIT_DATA does not count, under a 64 MiB limit: 128 MiB of
# memfd, SysV shared memory, a shared anonymous mapping, and socket buffers raised to 8 MiB.
HOLDERS = """\
import ctypes, errno, mmap, os, socket
libc = ctypes.CDLL(None, use_errno=True)
MiB = 1 << 20
out = {}
try:
    fd = os.memfd_create("hold")
    os.ftruncate(fd, 128 * MiB)
    out["memfd"] = "held"
except OSError as e:
    out["memfd"] = errno.errorcode[e.errno]
shm = libc.shmget(0, 128 * MiB, 0o1600)
out["shmget"] = "held" if shm >= 0 else errno.errorcode[ctypes.get_errno()]
out["msgget"] = "held" if libc.msgget(0, 0o1600) >= 0 else errno.errorcode[ctypes.get_errno()]
try:
    m = mmap.mmap(-1, 128 * MiB)
    m.write(b"x" * (128 * MiB))
    out["shared anonymous"] = "held"
except OSError as e:
    out["shared anonymous"] = errno.errorcode[e.errno]
a, b = socket.socketpair()
try:
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * MiB)
    out["SO_SNDBUF"] = "raised"
except OSError as e:
    out["SO_SNDBUF"] = errno.errorcode[e.errno]
# What is still allowed: POSIX shared memory, a file of the size-capped scratch tmpfs.
with open("/dev/shm/x", "wb") as f:
    f.truncate(MiB)
out["posix shm"] = "ok"
print(out)
"""


def test_memory_that_rlimits_do_not_count_is_refused_in_the_fallback(
    tmp_path: pytest.TempPathFactory,
) -> None:
    config = PoolConfig(
        warm_workers_per_runtime=1,
        runtimes=(Runtime.PYTHON, Runtime.JAVASCRIPT),
        cgroup_root=str(tmp_path),
    )
    with Pool(config) as pool:
        assert pool.cgroups.version == 0
        held = run(pool, Runtime.PYTHON, HOLDERS, limits=Limits(memory_bytes=64 << 20))
        assert held.verdict is Verdict.OK, held
        assert held.stdout.decode().strip() == str(
            {
                "memfd": "ENOSYS",
                "shmget": "ENOSYS",
                "msgget": "ENOSYS",
                "shared anonymous": "ENOMEM",
                "SO_SNDBUF": "EPERM",
                "posix shm": "ok",
            }
        )
        # Both runtimes still run ordinary programs with these rules.
        for runtime, code in (
            (Runtime.PYTHON, "print('hi')"),
            (Runtime.JAVASCRIPT, "console.log('hi')"),
        ):
            ok = run(pool, runtime, code)
            assert (ok.verdict, ok.stdout) == (Verdict.OK, b"hi\n"), ok


def test_with_a_memory_cgroup_those_calls_are_allowed(pool: Pool) -> None:
    """The positive control: with a cgroup each is charged to the worker and allowed."""
    assert pool.cgroups.version != 0
    held = run(pool, Runtime.PYTHON, HOLDERS, limits=Limits(memory_bytes=512 << 20))
    assert held.verdict is Verdict.OK, held
    assert held.stdout.decode().strip() == str(
        {
            "memfd": "held",
            "shmget": "held",
            "msgget": "held",
            "shared anonymous": "held",
            "SO_SNDBUF": "raised",
            "posix shm": "ok",
        }
    )
