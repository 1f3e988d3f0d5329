"""rlimits: set at boot in the child, and per request on the running worker with prlimit."""

from __future__ import annotations

import resource

from .policy import RlimitPlan


def apply_boot_rlimits(plan: RlimitPlan) -> None:
    def both(kind: int, value: int) -> None:
        resource.setrlimit(kind, (value, value))

    both(resource.RLIMIT_CORE, 0)
    both(resource.RLIMIT_NOFILE, plan.nofile)
    both(resource.RLIMIT_STACK, plan.stack_bytes)
    both(resource.RLIMIT_FSIZE, plan.fsize_bytes)
    both(resource.RLIMIT_NPROC, plan.nproc)
    if plan.data_bytes:
        both(resource.RLIMIT_DATA, plan.data_bytes)


def limit_running_worker(
    pid: int, cpu_seconds: int, max_processes: int, data_bytes: int = 0
) -> None:
    """Tighten the limits of a warm worker for its request (children inherit them).

    cpu_seconds counts from the worker's start: the caller adds the time already used booting.
    SIGXCPU at the soft limit, SIGKILL one second later.
    """
    resource.prlimit(pid, resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.prlimit(pid, resource.RLIMIT_NPROC, (max_processes, max_processes))
    if data_bytes:
        resource.prlimit(pid, resource.RLIMIT_DATA, (data_bytes, data_bytes))
