"""`python -m bench burst` and `python -m bench humaneval`: their records, tables and
HumanEval's programs (pure, but for running two programs with this interpreter; no timing)."""

from __future__ import annotations

import subprocess
import sys

from bench.burst.report import BurstReport, BurstResult, BurstRun
from bench.burst.report import render as render_burst
from bench.humaneval.problems import load_problems
from bench.humaneval.report import HumanEvalReport, Pass
from bench.humaneval.report import render as render_humaneval


def _burst(per_s: float, completion_ms: list[float], failures: int = 0) -> BurstRun:
    return BurstRun(
        completion_ns=[int(ms * 1e6) for ms in completion_ms],
        failures=failures,
        first_error="QuotaExceeded: no" if failures else "",
        wall_s=len(completion_ms) / per_s,
    )


def test_burst_table_compares_each_daemon_with_bwrap_of_its_runtime() -> None:
    daemon = BurstResult("python", "daemon", 16, [_burst(200, [10, 20, 30, 40]), _burst(100, [5])])
    bwrap = BurstResult("python", "bwrap", 2, [_burst(50, [100, 200])])
    assert daemon.per_s == 150  # the median burst's
    stats = daemon.completion
    assert stats is not None and stats.samples == 5 and stats.p50_ms == 20
    text = render_burst(
        BurstReport(
            command="python -m bench burst",
            machine={"date": "2026-01-01 00:00 UTC"},
            jobs=4,
            rounds=2,
            warm_workers=8,
            tenant={"max_concurrent_executions": 4},
            results=[daemon, bwrap, BurstResult("javascript", "daemon", 16, [_burst(10, [1], 3)])],
        )
    )
    assert "| python     | daemon, --max-concurrent 16    |" in text
    assert "| 3.00x" in text  # 150 / 50 exec/s
    assert "3 failed" in text and "javascript/daemon/16: QuotaExceeded: no" in text


def test_humaneval_programs_are_the_164_canonical_solutions_with_their_checks() -> None:
    problems = load_problems()
    assert len(problems) == 164
    assert len({p.task_id for p in problems}) == 164
    assert problems[0].task_id == "HumanEval/0"
    assert all(p.program.rstrip().endswith(")") and "\ncheck(" in p.program for p in problems)


def test_a_humaneval_program_exits_0_and_a_wrong_solution_does_not() -> None:
    program = load_problems()[0].program
    ok = subprocess.run([sys.executable, "-I", "-S", "-c", program], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    broken = program.replace("return True", "return False", 1)
    assert broken != program
    failed = subprocess.run([sys.executable, "-I", "-S", "-c", broken], capture_output=True)
    assert failed.returncode == 1 and b"AssertionError" in failed.stderr


def test_humaneval_report_gives_the_ratio_and_names_failed_tasks() -> None:
    report = HumanEvalReport(
        command="python -m bench humaneval",
        machine={"date": "2026-01-01 00:00 UTC"},
        problems=2,
        concurrency=2,
        warm_workers=8,
        passes={
            "daemon": [Pass(1.0, [1_000_000, 2_000_000]), Pass(3.0, [1_000_000, 1_000_000])],
            "bwrap": [Pass(4.0, [5_000_000, 5_000_000], {"HumanEval/1": "exit 1: AssertionError"})],
        },
    )
    text = render_humaneval(report)
    assert "**2.00x**" in text  # 4.0 / median(1.0, 3.0)
    assert "1/2" in text and "2/2, 2/2" in text
    assert "- bwrap: HumanEval/1 failed: exit 1: AssertionError" in text
