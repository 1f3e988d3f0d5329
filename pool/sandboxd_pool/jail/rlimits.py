"""rlimits: set at boot in the child, and per request on the running worker with prlimit."""

from __future__ import annotations

import resource

from .policy import RlimitPlan


def _within_hard(value: int, hard: int) -> int:
    """Raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace, which a
    non-root daemon (subuid mode) or a container without it lacks: never ask for more than the
    hard limit the worker inherited. Lower is only stricter."""
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def apply_boot_rlimits(plan: RlimitPlan) -> None:
    def both(kind: int, value: int) -> None:
        value = _within_hard(value, resource.getrlimit(kind)[1])
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

    def both(kind: int, soft: int, hard: int) -> None:
        current = resource.prlimit(pid, kind)[1]
        resource.prlimit(pid, kind, (_within_hard(soft, current), _within_hard(hard, current)))

    both(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    both(resource.RLIMIT_NPROC, max_processes, max_processes)
    if data_bytes:
        both(resource.RLIMIT_DATA, data_bytes, data_bytes)
