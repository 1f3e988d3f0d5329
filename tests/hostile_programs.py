"""Hostile programs shared by the suites that run them through different doors (the pool in
tests/jail, a non-root pool in tests/pool/test_subuid_mode.py, the image in tests/container),
so that each door is held to the same program and the same verdict.
Import as `from hostile_programs import ...` (tests/ is on the path, like pollution_programs).
"""

from __future__ import annotations

import textwrap

from sandboxd_pool import Limits

# The fork bomb: every process forks forever; the program's first process reports the peak of tasks it saw and how
# many forks failed, "OVER n" if ever more than the limit (argv[1]) existed at once.
FORK_LIMITS = Limits(max_processes=32, wall_time_ms=3_000)

PY_FORK_BOMB = textwrap.dedent(
    """
    import os, sys, time
    LIMIT = int(sys.argv[1])
    def tasks():
        n = 0
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    n += len(os.listdir(f"/proc/{d}/task"))
                except OSError:
                    pass
        return n
    start, peak, failed, reported = time.monotonic(), 0, 0, False
    ROOT = os.getpid()  # the program itself (the worker's init is PID 1)
    while True:  # every process, parent and children alike, keeps forking
        try:
            os.fork()
        except OSError:
            failed += 1
            n = tasks()
            if n > LIMIT:
                os.write(1, f"OVER {n}\\n".encode())
            if os.getpid() == ROOT:
                peak = max(peak, n)
                if not reported and time.monotonic() - start > 1.0:
                    os.write(1, f"peak {peak} failed {failed}\\n".encode())
                    reported = True
    """
)
