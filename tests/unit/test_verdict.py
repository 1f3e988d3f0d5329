"""verdict.classify: one pure function from kernel facts to a Verdict, rule by rule.

Wait statuses are built the way the kernel encodes them: an exit code in bits 8-15, a
terminating signal in bits 0-6 (0x80 set when a core was dumped).
"""

from __future__ import annotations

import os
import signal

import pytest

from sandboxd_pool.types import Verdict
from sandboxd_pool.verdict import ExitFacts, KillReason, classify


def exited(code: int) -> int:
    return (code & 0xFF) << 8


def signaled(sig: int, core_dumped: bool = False) -> int:
    return int(sig) | (0x80 if core_dumped else 0)


def test_status_helpers_encode_like_the_kernel() -> None:
    assert os.WIFEXITED(exited(3)) and os.WEXITSTATUS(exited(3)) == 3
    assert os.WIFSIGNALED(signaled(signal.SIGKILL))
    assert os.WTERMSIG(signaled(signal.SIGSEGV, core_dumped=True)) == signal.SIGSEGV


class TestNoExitReport:
    def test_missing_wait_status_is_internal_error(self) -> None:
        assert classify(ExitFacts(wait_status=None)) is Verdict.INTERNAL_ERROR

    def test_missing_wait_status_outranks_every_other_fact(self) -> None:
        facts = ExitFacts(
            wait_status=None,
            kill_reason=KillReason.TIMEOUT,
            oom_kills=2,
            blocked_syscall="ptrace",
        )
        assert classify(facts) is Verdict.INTERNAL_ERROR


class TestExitCodes:
    def test_exit_zero_is_ok(self) -> None:
        assert classify(ExitFacts(wait_status=exited(0))) is Verdict.OK

    @pytest.mark.parametrize("code", [1, 2, 3, 42, 127, 255])
    def test_non_zero_exit_is_runtime_error(self, code: int) -> None:
        assert classify(ExitFacts(wait_status=exited(code))) is Verdict.RUNTIME_ERROR

    def test_cpu_time_over_the_limit_does_not_turn_a_normal_exit_into_a_cpu_verdict(
        self,
    ) -> None:
        facts = ExitFacts(wait_status=exited(0), cpu_time_us=2_000_000, cpu_limit_us=1_000_000)
        assert classify(facts) is Verdict.OK


class TestBlockedSyscall:
    def test_named_blocked_syscall_is_syscall_blocked(self) -> None:
        facts = ExitFacts(wait_status=signaled(signal.SIGKILL), blocked_syscall="ptrace")
        assert classify(facts) is Verdict.SYSCALL_BLOCKED

    def test_blocked_syscall_outranks_parent_kill_reasons(self) -> None:
        for reason in KillReason:
            facts = ExitFacts(
                wait_status=signaled(signal.SIGKILL), kill_reason=reason, blocked_syscall="bpf"
            )
            assert classify(facts) is Verdict.SYSCALL_BLOCKED, reason

    def test_sigsys_without_a_name_is_syscall_blocked(self) -> None:
        assert classify(ExitFacts(wait_status=signaled(signal.SIGSYS))) is Verdict.SYSCALL_BLOCKED

    def test_empty_blocked_syscall_name_is_not_a_block(self) -> None:
        assert classify(ExitFacts(wait_status=exited(0), blocked_syscall="")) is Verdict.OK


class TestParentKills:
    @pytest.mark.parametrize(
        ("reason", "verdict"),
        [
            (KillReason.OUTPUT, Verdict.OUTPUT_LIMIT),
            (KillReason.TIMEOUT, Verdict.TIMEOUT),
            (KillReason.CPU, Verdict.CPU_TIME_LIMIT),
            (KillReason.CANCELLED, Verdict.KILLED),
        ],
    )
    def test_kill_reason_decides_the_verdict(self, reason: KillReason, verdict: Verdict) -> None:
        facts = ExitFacts(wait_status=signaled(signal.SIGKILL), kill_reason=reason)
        assert classify(facts) is verdict

    def test_output_limit_outranks_timeout_and_cpu(self) -> None:
        # Only one reason is recorded; the order of the rules is what matters here: OUTPUT
        # is checked before the deadlines. A SIGKILL past the CPU limit still reads OUTPUT.
        facts = ExitFacts(
            wait_status=signaled(signal.SIGKILL),
            kill_reason=KillReason.OUTPUT,
            cpu_time_us=5_000_000,
            cpu_limit_us=1_000_000,
        )
        assert classify(facts) is Verdict.OUTPUT_LIMIT

    def test_no_kill_reason_and_plain_exit_is_ok(self) -> None:
        facts = ExitFacts(wait_status=exited(0), kill_reason=KillReason.NONE)
        assert classify(facts) is Verdict.OK


class TestMemory:
    def test_oom_kill_is_memory_limit(self) -> None:
        facts = ExitFacts(wait_status=signaled(signal.SIGKILL), oom_kills=1)
        assert classify(facts) is Verdict.MEMORY_LIMIT

    def test_oom_kill_of_a_child_then_non_zero_exit_is_memory_limit(self) -> None:
        facts = ExitFacts(wait_status=exited(1), oom_kills=3)
        assert classify(facts) is Verdict.MEMORY_LIMIT

    def test_no_oom_kill_and_sigkill_is_killed(self) -> None:
        facts = ExitFacts(wait_status=signaled(signal.SIGKILL), oom_kills=0)
        assert classify(facts) is Verdict.KILLED


class TestSignals:
    def test_sigxcpu_at_the_cpu_limit_is_cpu_time_limit(self) -> None:
        facts = ExitFacts(
            wait_status=signaled(signal.SIGXCPU), cpu_time_us=1_000_000, cpu_limit_us=1_000_000
        )
        assert classify(facts) is Verdict.CPU_TIME_LIMIT

    def test_sigxcpu_with_core_dump_at_the_cpu_limit_is_cpu_time_limit(self) -> None:
        facts = ExitFacts(
            wait_status=signaled(signal.SIGXCPU, core_dumped=True),
            cpu_time_us=2_000_000,
            cpu_limit_us=1_000_000,
        )
        assert classify(facts) is Verdict.CPU_TIME_LIMIT

    def test_self_sent_sigxcpu_below_the_cpu_limit_is_killed(self) -> None:
        # The verdict comes from the CPU time the parent measured, not from the signal the
        # program chose to die of.
        facts = ExitFacts(
            wait_status=signaled(signal.SIGXCPU), cpu_time_us=1_000, cpu_limit_us=1_000_000
        )
        assert classify(facts) is Verdict.KILLED

    def test_sigkill_at_the_cpu_limit_is_cpu_time_limit(self) -> None:
        # RLIMIT_CPU's hard limit ends in SIGKILL: the CPU time used tells it apart.
        facts = ExitFacts(
            wait_status=signaled(signal.SIGKILL), cpu_time_us=1_000_000, cpu_limit_us=1_000_000
        )
        assert classify(facts) is Verdict.CPU_TIME_LIMIT

    def test_sigkill_below_the_cpu_limit_is_killed(self) -> None:
        facts = ExitFacts(
            wait_status=signaled(signal.SIGKILL), cpu_time_us=999_999, cpu_limit_us=1_000_000
        )
        assert classify(facts) is Verdict.KILLED

    def test_sigkill_without_a_cpu_limit_is_killed(self) -> None:
        facts = ExitFacts(wait_status=signaled(signal.SIGKILL), cpu_time_us=10**9, cpu_limit_us=0)
        assert classify(facts) is Verdict.KILLED

    @pytest.mark.parametrize(
        "sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGTERM, signal.SIGBUS, signal.SIGPIPE]
    )
    def test_other_signals_are_killed(self, sig: signal.Signals) -> None:
        assert classify(ExitFacts(wait_status=signaled(sig))) is Verdict.KILLED
        assert classify(ExitFacts(wait_status=signaled(sig, core_dumped=True))) is Verdict.KILLED

    def test_sigxcpu_is_not_mistaken_for_a_syscall_block(self) -> None:
        assert classify(ExitFacts(wait_status=signaled(signal.SIGXCPU))) is not (
            Verdict.SYSCALL_BLOCKED
        )


class TestPrecedence:
    """The order of the rules: no report > blocked syscall > output cap > cancel > OOM kill >
    wall deadline > CPU deadline > the wait status itself."""

    @pytest.mark.parametrize(
        ("reason", "verdict"),
        [
            (KillReason.OUTPUT, Verdict.OUTPUT_LIMIT),
            (KillReason.CANCELLED, Verdict.KILLED),
            (KillReason.TIMEOUT, Verdict.MEMORY_LIMIT),
            (KillReason.CPU, Verdict.MEMORY_LIMIT),
            (KillReason.NONE, Verdict.MEMORY_LIMIT),
        ],
    )
    def test_oom_kill_against_each_kill_reason(self, reason: KillReason, verdict: Verdict) -> None:
        # An OOM-killed child and a parent hanging until the deadline: the root cause is memory.
        facts = ExitFacts(wait_status=signaled(signal.SIGKILL), kill_reason=reason, oom_kills=1)
        assert classify(facts) is verdict

    def test_timeout_outranks_the_cpu_time_seen_at_exit(self) -> None:
        facts = ExitFacts(
            wait_status=signaled(signal.SIGKILL),
            kill_reason=KillReason.TIMEOUT,
            cpu_time_us=5_000_000,
            cpu_limit_us=1_000_000,
        )
        assert classify(facts) is Verdict.TIMEOUT

    def test_parent_kill_reason_outranks_a_clean_exit_that_raced_it(self) -> None:
        facts = ExitFacts(wait_status=exited(0), kill_reason=KillReason.TIMEOUT)
        assert classify(facts) is Verdict.TIMEOUT


class TestHandlerResult:
    """HANDLER mode: OK needs exit status 0 and a result; exit 0 without one is the program's
    failure (it exited before its handler returned)."""

    def test_exit_zero_with_a_result_is_ok(self) -> None:
        assert classify(ExitFacts(wait_status=exited(0))) is Verdict.OK

    def test_exit_zero_without_a_result_is_runtime_error(self) -> None:
        facts = ExitFacts(wait_status=exited(0), handler_result_missing=True)
        assert classify(facts) is Verdict.RUNTIME_ERROR

    def test_non_zero_exit_without_a_result_is_runtime_error(self) -> None:
        facts = ExitFacts(wait_status=exited(1), handler_result_missing=True)
        assert classify(facts) is Verdict.RUNTIME_ERROR

    @pytest.mark.parametrize(
        ("reason", "verdict"),
        [
            (KillReason.OUTPUT, Verdict.OUTPUT_LIMIT),
            (KillReason.TIMEOUT, Verdict.TIMEOUT),
            (KillReason.CPU, Verdict.CPU_TIME_LIMIT),
            (KillReason.CANCELLED, Verdict.KILLED),
        ],
    )
    def test_a_parent_kill_outranks_the_missing_result(
        self, reason: KillReason, verdict: Verdict
    ) -> None:
        facts = ExitFacts(
            wait_status=signaled(signal.SIGKILL), kill_reason=reason, handler_result_missing=True
        )
        assert classify(facts) is verdict

    def test_oom_and_blocked_syscall_outrank_the_missing_result(self) -> None:
        oom = ExitFacts(
            wait_status=signaled(signal.SIGKILL), oom_kills=1, handler_result_missing=True
        )
        assert classify(oom) is Verdict.MEMORY_LIMIT
        blocked = ExitFacts(
            wait_status=signaled(signal.SIGKILL),
            blocked_syscall="ptrace",
            handler_result_missing=True,
        )
        assert classify(blocked) is Verdict.SYSCALL_BLOCKED

    def test_a_signal_without_a_result_is_killed(self) -> None:
        facts = ExitFacts(wait_status=signaled(signal.SIGTERM), handler_result_missing=True)
        assert classify(facts) is Verdict.KILLED

    def test_no_exit_report_is_internal_error(self) -> None:
        facts = ExitFacts(wait_status=None, handler_result_missing=True)
        assert classify(facts) is Verdict.INTERNAL_ERROR


def test_classify_is_pure() -> None:
    facts = ExitFacts(wait_status=exited(3), oom_kills=0)
    assert classify(facts) is classify(facts) is Verdict.RUNTIME_ERROR
    assert facts == ExitFacts(wait_status=exited(3), oom_kills=0)
