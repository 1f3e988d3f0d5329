"""One pure function from kernel facts to a Verdict."""

from __future__ import annotations

import enum
import os
import signal
from dataclasses import dataclass

from .types import Verdict


class KillReason(enum.Enum):
    """Why the parent killed the worker, if it did."""

    NONE = "none"
    TIMEOUT = "timeout"
    CPU = "cpu"
    OUTPUT = "output"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ExitFacts:
    wait_status: int | None  # None: no exit report (the zygote died): internal error
    kill_reason: KillReason = KillReason.NONE
    oom_kills: int = 0
    blocked_syscall: str | None = None
    cpu_time_us: int = 0
    cpu_limit_us: int = 0
    # HANDLER mode: the worker closed its control socket without sending the handler's return
    # value (the handler exited early, e.g. sys.exit(0) / process.exit(0)).
    handler_result_missing: bool = False


def classify(facts: ExitFacts) -> Verdict:
    if facts.wait_status is None:
        return Verdict.INTERNAL_ERROR
    if facts.blocked_syscall:
        return Verdict.SYSCALL_BLOCKED
    if facts.kill_reason is KillReason.OUTPUT:
        return Verdict.OUTPUT_LIMIT
    if facts.kill_reason is KillReason.CANCELLED:
        return Verdict.KILLED
    # An OOM kill is the root cause even when the program then hung until a deadline (a
    # parent waiting forever for a child the kernel killed).
    if facts.oom_kills > 0:
        return Verdict.MEMORY_LIMIT
    if facts.kill_reason is KillReason.TIMEOUT:
        return Verdict.TIMEOUT
    if facts.kill_reason is KillReason.CPU:
        return Verdict.CPU_TIME_LIMIT
    status = facts.wait_status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        # RLIMIT_CPU (SIGXCPU, then SIGKILL) is the backstop of the CPU limit; a program that
        # sends itself either signal without having used its CPU time is merely KILLED.
        if (
            sig in (signal.SIGXCPU, signal.SIGKILL)
            and facts.cpu_limit_us
            and facts.cpu_time_us >= facts.cpu_limit_us
        ):
            return Verdict.CPU_TIME_LIMIT
        if sig == signal.SIGSYS:
            return Verdict.SYSCALL_BLOCKED
        return Verdict.KILLED
    if os.waitstatus_to_exitcode(status) != 0:
        return Verdict.RUNTIME_ERROR
    # HANDLER mode succeeds only with a result: exit 0 without one is the program's failure.
    return Verdict.RUNTIME_ERROR if facts.handler_result_missing else Verdict.OK
