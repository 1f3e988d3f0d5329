"""Pool.check and CheckedRequest: a request validated once (the daemon's admission) runs
without a second check on the pool that checked it, and is checked again anywhere else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandboxd_pool import (
    CheckedRequest,
    ExecutionRequest,
    InvalidRequest,
    Limits,
    Pool,
    PoolConfig,
    Runtime,
    Verdict,
)
from sandboxd_pool.validation import check

PY = Runtime.PYTHON
JS = Runtime.JAVASCRIPT


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    with Pool(PoolConfig(warm_workers_per_runtime=1, runtimes=(PY,))) as p:
        yield p


def test_check_refuses_what_execute_refuses(pool: Pool) -> None:
    bad = ExecutionRequest(runtime=PY, code="print(1)", env={"A=B": "1"})
    with pytest.raises(InvalidRequest) as checked:
        pool.check(bad)
    with pytest.raises(InvalidRequest) as executed:
        pool.execute(bad)
    assert (checked.value.field, checked.value.message) == (
        executed.value.field,
        executed.value.message,
    )


def test_a_checked_request_runs_with_the_limits_found(pool: Pool) -> None:
    checked = pool.check(
        ExecutionRequest(runtime=PY, code="print('hi')", limits=Limits(wall_time_ms=3000))
    )
    assert checked.limits.wall_time_ms == 3000 and checked.limits.memory_bytes > 0
    outcome = pool.execute(checked)
    assert outcome.verdict is Verdict.OK and outcome.stdout == b"hi\n"


def test_a_request_checked_under_another_configuration_is_checked_again(pool: Pool) -> None:
    """Checked for a configuration with JavaScript, run on this Python-only pool: the pool's
    own check refuses it (a CheckedRequest is not a pass for any pool)."""
    other = PoolConfig(warm_workers_per_runtime=1, runtimes=(PY, JS))
    checked = check(ExecutionRequest(runtime=JS, code="console.log(1)"), other)
    assert isinstance(checked, CheckedRequest)
    with pytest.raises(InvalidRequest) as info:
        pool.execute(checked)
    assert info.value.field == "runtime"
