"""Proportional set size (PSS) of warm workers, of bare idle interpreters, of the pool itself.

PSS splits every shared page among the processes that map it, so it depends on how many
processes share the same files. To compare like with like, the bare idle interpreters
are started as many at a time as the pool keeps warm workers per runtime, and measured
while the pool is not running (and the pool while the bare ones are gone).
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import time
from collections.abc import Iterable

import psutil

from bench.common.runtimes import BenchRuntime, clean_env
from bench.common.stats import PoolMemory, RuntimeMemory

SETTLE_POLL_S = 0.2


def pss_bytes(pid: int) -> int:
    """PSS of one process, 0 if it is gone or unreadable."""
    try:
        return int(psutil.Process(pid).memory_full_info().pss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []


_KCMP_SYSCALL = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_KCMP_VM = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _same_memory(a: int, b: int) -> bool:
    """Whether processes `a` and `b` share one address space (clone(CLONE_VM) without a thread:
    the Python worker's exit helper). kcmp(2); False where it is unknown or fails."""
    if _KCMP_SYSCALL is None:
        return False
    return int(_libc.syscall(_KCMP_SYSCALL, a, b, _KCMP_VM, 0, 0)) == 0


def tree_pss_bytes(pid: int) -> tuple[int, int]:
    """(PSS summed over `pid`'s process tree, number of processes in it). A process that shares
    its address space with one already counted adds nothing: PSS is a property of the memory
    map, which /proc shows in full under each process that shares it."""
    pids = tree_pids(pid)
    counted: list[int] = []
    for p in pids:
        if not any(_same_memory(p, q) for q in counted):
            counted.append(p)
    return sum(pss_bytes(p) for p in counted), len(pids)


def _wait_until_settled(pids: Iterable[int], settle_s: float, max_wait_s: float) -> None:
    """Sleep at least `settle_s`, then until the summed PSS stops moving (within 1%)."""
    pids = list(pids)
    time.sleep(settle_s)
    waited = settle_s
    previous = sum(pss_bytes(p) for p in pids)
    while waited < max_wait_s:
        time.sleep(SETTLE_POLL_S)
        waited += SETTLE_POLL_S
        current = sum(pss_bytes(p) for p in pids)
        if previous and abs(current - previous) <= 0.01 * previous:
            return
        previous = current


def bare_idle_pss(runtime: BenchRuntime, count: int, settle_s: float) -> list[int]:
    """PSS of `count` bare idle interpreters blocked reading a pipe on stdin, run together."""
    procs = [
        subprocess.Popen(
            runtime.idle_argv,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        _wait_until_settled((p.pid for p in procs), settle_s, max_wait_s=settle_s + 5.0)
        return [pss_bytes(p.pid) for p in procs if p.poll() is None]
    finally:
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()  # EOF: both idle programs exit on their own
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _runtime_of_process(pid: int) -> str:
    try:
        exe = os.path.basename(psutil.Process(pid).exe())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "unknown"
    return "javascript" if exe.startswith("node") else "python"


def discover_pool_processes(pool: object) -> tuple[dict[str, list[int]], int | None, str]:
    """({runtime name: worker pids}, zygote pid, how they were found).

    Uses `pool.worker_pids()` and `pool.zygote_pid` when the engine provides them; otherwise
    falls back to the process tree: the caller's children are the pool's own processes
    (the zygote and helpers) and their children are worker trees, told apart by executable.
    """
    worker_pids_fn = getattr(pool, "worker_pids", None)
    zygote_pid = getattr(pool, "zygote_pid", None)
    if callable(worker_pids_fn):
        by_runtime: dict[str, list[int]] = {}
        for runtime, pids in worker_pids_fn().items():
            name = getattr(runtime, "value", str(runtime))
            by_runtime[name] = list(pids)
        return by_runtime, zygote_pid, "pool.worker_pids() and pool.zygote_pid"

    me = psutil.Process()
    by_runtime = {}
    direct = me.children(recursive=False)
    for child in direct:
        for grandchild in child.children(recursive=False):
            by_runtime.setdefault(_runtime_of_process(grandchild.pid), []).append(grandchild.pid)
    if zygote_pid is None and len(direct) == 1:
        zygote_pid = direct[0].pid
    source = (
        "FALLBACK: pool.worker_pids() missing; workers = grandchildren of this process, "
        "pool processes = its children"
    )
    return by_runtime, zygote_pid, source


def pool_memory(pool: object) -> tuple[PoolMemory, dict[str, RuntimeMemory]]:
    """PSS of the pool's own processes (caller + zygote + helpers) and of each warm worker."""
    by_runtime, zygote_pid, source = discover_pool_processes(pool)
    worker_trees: set[int] = set()
    per_runtime: dict[str, RuntimeMemory] = {}
    for name, pids in by_runtime.items():
        mem = RuntimeMemory(runtime=name)
        for pid in pids:
            worker_trees.update(tree_pids(pid))
            total, nprocs = tree_pss_bytes(pid)
            if nprocs:
                mem.worker_pss_bytes.append(total)
                mem.worker_processes += nprocs
        per_runtime[name] = mem

    me = os.getpid()
    result = PoolMemory(
        caller_pss_bytes=pss_bytes(me),
        warm_workers_per_runtime={name: len(m.worker_pss_bytes) for name, m in per_runtime.items()},
        source=source,
    )
    if zygote_pid:
        result.zygote_pss_bytes = pss_bytes(zygote_pid)
    for pid in tree_pids(me)[1:]:
        if pid == zygote_pid or pid in worker_trees:
            continue
        result.helpers_pss_bytes += pss_bytes(pid)
        result.helper_count += 1
    return result, per_runtime
