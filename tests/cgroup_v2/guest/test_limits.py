"""The engine's limits on a real cgroup v2 hierarchy (run inside the VM).

Each verdict here is the one only a cgroup can give: MEMORY_LIMIT from the OOM kill counted in
memory.events (the rlimit fallback gives RUNTIME_ERROR with MemoryError), a whole-tree pid
limit from pids.max, CPU time of every process of the worker from cpu.stat, and peak memory of
the whole tree from memory.peak (the fallback reports the largest single process).
"""

from __future__ import annotations

import signal
import textwrap

import pytest
from helpers import run
from hostile_programs import FORK_LIMITS, PY_FORK_BOMB

from sandboxd_pool import Limits, Outcome, Pool, Runtime, Verdict

MiB = 1024 * 1024
# The guest's CPUs are emulated (TCG) and shared with the host's other work: a kill lands one
# or two of the pool's 20 ms polls late, each poll costing ten times what it does on the host.
CPU_SLACK_US = 600_000


def _killed(outcome: Outcome, verdict: Verdict) -> None:
    assert outcome.verdict is verdict, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.exit_code is None
    assert outcome.signal == signal.SIGKILL


# ---------------------------------------------------------------------------------- memory

MEMORY_LIMITS = Limits(memory_bytes=64 * MiB, wall_time_ms=30_000)
BALLOONS = {
    "py-bytearrays": (Runtime.PYTHON, "b = []\nwhile True: b.append(bytearray(16 << 20))"),
    "js-buffers": (Runtime.JAVASCRIPT, "const b = []; while (true) b.push(Buffer.alloc(16 << 20, 1));"),
    "py-children": (
        Runtime.PYTHON,
        textwrap.dedent(
            """
            import os, time
            kids = []
            for i in range(4):  # four processes of 30 MiB each: the limit is the worker's
                pid = os.fork()
                if pid == 0:
                    b = bytearray(30 << 20)
                    time.sleep(2)
                    os._exit(0)
                kids.append(pid)
            for pid in kids:
                os.waitpid(pid, 0)
            print("parent done")
            """
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("balloon", sorted(BALLOONS))
def test_memory_balloon_is_memory_limit(v2_pool: Pool, balloon: str) -> None:
    runtime, code = BALLOONS[balloon]
    outcome = run(v2_pool, runtime, code, limits=MEMORY_LIMITS)
    assert outcome.verdict is Verdict.MEMORY_LIMIT, (outcome.verdict, outcome.stderr[-2000:])
    assert MEMORY_LIMITS.memory_bytes // 2 <= outcome.usage.peak_memory_bytes
    assert outcome.usage.peak_memory_bytes <= MEMORY_LIMITS.memory_bytes
    if balloon == "py-children":
        # a child is OOM-killed, the parent (under the limit) reaps them and exits 0: the
        # verdict comes from the cgroup's OOM kill count, not from the exit status
        assert (outcome.exit_code, outcome.stdout) == (0, b"parent done\n"), outcome
    else:
        assert outcome.signal == signal.SIGKILL
        assert b"MemoryError" not in outcome.stderr


def test_peak_memory_is_the_whole_trees(v2_pool: Pool) -> None:
    """Three processes holding 40 MiB each at once: the cgroup's peak counts them together,
    which no single process's RSS (the fallback's figure) would."""
    code = textwrap.dedent(
        """
        import os, time
        r, w = os.pipe()
        kids = []
        for i in range(3):
            pid = os.fork()
            if pid == 0:
                b = bytearray(40 << 20)
                for i in range(0, len(b), 4096):
                    b[i] = 1
                os.write(w, b"x")  # all three hold theirs at once before any exits
                time.sleep(1.5)
                os._exit(0)
            kids.append(pid)
        got = 0
        while got < 3:
            got += len(os.read(r, 3 - got))
        for pid in kids:
            os.waitpid(pid, 0)
        print("ok")
        """
    )
    outcome = run(v2_pool, Runtime.PYTHON, code, limits=Limits(memory_bytes=256 * MiB))
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"ok\n"), outcome
    assert 120 * MiB <= outcome.usage.peak_memory_bytes <= 256 * MiB, outcome.usage


# ------------------------------------------------------------------------------- processes

# The fork bomb of tests/jail (tests/hostile_programs.py), with more wall time: the guest's CPUs
# are emulated.
FORK_LIMITS_IN_THE_VM = Limits(max_processes=FORK_LIMITS.max_processes, wall_time_ms=8_000)


def test_fork_bomb_is_held_at_the_pids_limit(v2_pool: Pool) -> None:
    outcome = run(v2_pool, Runtime.PYTHON, PY_FORK_BOMB, args=("32",), limits=FORK_LIMITS_IN_THE_VM)
    _killed(outcome, Verdict.TIMEOUT)
    assert b"OVER" not in outcome.stdout, outcome.stdout
    words = outcome.stdout.decode().split()
    assert words[:1] == ["peak"] and words[2] == "failed", outcome.stdout
    peak, failed = int(words[1]), int(words[3])
    assert 16 <= peak <= 32  # the bomb filled the pids limit and never passed it
    assert failed > 0


# ------------------------------------------------------------------------------------- CPU

CPU_LIMITS = Limits(cpu_time_ms=1_000, wall_time_ms=30_000)
BURNERS = {
    "py-loop": (Runtime.PYTHON, "while True: pass"),
    "js-loop": (Runtime.JAVASCRIPT, "while (true) {}"),
    "py-two-children": (
        Runtime.PYTHON,
        "import os\nfor i in range(2):\n    if os.fork() == 0:\n        break\nwhile True: pass",
    ),
}


@pytest.mark.parametrize("burner", sorted(BURNERS))
def test_cpu_time_limit_counts_every_process(v2_pool: Pool, burner: str) -> None:
    runtime, code = BURNERS[burner]
    outcome = run(v2_pool, runtime, code, limits=CPU_LIMITS)
    _killed(outcome, Verdict.CPU_TIME_LIMIT)
    limit_us = CPU_LIMITS.cpu_time_ms * 1000
    assert limit_us <= outcome.usage.cpu_time_us <= limit_us + CPU_SLACK_US, outcome.usage


def test_cpu_time_of_a_finished_program_is_its_trees(v2_pool: Pool) -> None:
    """Two children burn 0.3 s of CPU each and exit: the usage counts them (cpu.stat)."""
    code = textwrap.dedent(
        """
        import os, time
        def burn(seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
        kids = []
        for i in range(2):
            pid = os.fork()
            if pid == 0:
                burn(0.3)
                os._exit(0)
            kids.append(pid)
        for pid in kids:
            os.waitpid(pid, 0)
        print("ok")
        """
    )
    outcome = run(v2_pool, Runtime.PYTHON, code, limits=Limits(wall_time_ms=30_000))
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"ok\n"), outcome
    assert outcome.usage.cpu_time_us >= 600_000, outcome.usage
