"""The engine's public value types: limit merging and request immutability."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandboxd_pool.types import DEFAULT_LIMITS, ExecutionRequest, Limits, Runtime

LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(Limits))

limit_values = st.one_of(st.just(0), st.integers(min_value=1, max_value=2**40))
limits = st.builds(Limits, **{name: limit_values for name in LIMIT_FIELDS})


class TestLimitsMergedOver:
    def test_all_zero_takes_every_default(self) -> None:
        assert Limits().merged_over(DEFAULT_LIMITS) == DEFAULT_LIMITS

    def test_set_fields_win_and_zero_fields_fall_back(self) -> None:
        requested = Limits(wall_time_ms=500, memory_bytes=32 * 1024 * 1024)

        merged = requested.merged_over(DEFAULT_LIMITS)

        assert merged.wall_time_ms == 500
        assert merged.memory_bytes == 32 * 1024 * 1024
        assert merged.cpu_time_ms == DEFAULT_LIMITS.cpu_time_ms
        assert merged.max_output_bytes == DEFAULT_LIMITS.max_output_bytes
        assert merged.max_processes == DEFAULT_LIMITS.max_processes
        assert merged.tmpfs_bytes == DEFAULT_LIMITS.tmpfs_bytes

    def test_returns_a_new_value_and_leaves_both_inputs_alone(self) -> None:
        requested = Limits(wall_time_ms=500)
        defaults = Limits(wall_time_ms=1, cpu_time_ms=2)

        merged = requested.merged_over(defaults)

        assert merged == Limits(wall_time_ms=500, cpu_time_ms=2)
        assert requested == Limits(wall_time_ms=500)
        assert defaults == Limits(wall_time_ms=1, cpu_time_ms=2)

    @given(requested=limits, defaults=limits)
    def test_each_field_is_the_request_unless_zero(
        self, requested: Limits, defaults: Limits
    ) -> None:
        merged = requested.merged_over(defaults)
        for name in LIMIT_FIELDS:
            mine, default = getattr(requested, name), getattr(defaults, name)
            assert getattr(merged, name) == (mine if mine != 0 else default), name

    @given(requested=limits, defaults=limits)
    def test_merging_twice_changes_nothing(self, requested: Limits, defaults: Limits) -> None:
        once = requested.merged_over(defaults)
        assert once.merged_over(defaults) == once

    @given(requested=limits)
    def test_over_fully_set_defaults_leaves_no_zero(self, requested: Limits) -> None:
        merged = requested.merged_over(DEFAULT_LIMITS)
        assert all(getattr(merged, name) > 0 for name in LIMIT_FIELDS)

    def test_limits_are_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            DEFAULT_LIMITS.wall_time_ms = 1  # type: ignore[misc]


class TestExecutionRequestImmutability:
    def test_fields_cannot_be_reassigned(self) -> None:
        request = ExecutionRequest(runtime=Runtime.PYTHON, code="print(1)")
        with pytest.raises(dataclasses.FrozenInstanceError):
            request.code = "print(2)"  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            request.limits = Limits(wall_time_ms=1)  # type: ignore[misc]

    def test_env_and_files_are_read_only_snapshots(self) -> None:
        env = {"GREETING": "hello"}
        files = {"data/input.txt": b"42"}

        request = ExecutionRequest(runtime=Runtime.PYTHON, code="", env=env, files=files)
        env["GREETING"] = "changed after the request was built"
        files["evil.txt"] = b"added after the request was built"

        assert dict(request.env) == {"GREETING": "hello"}
        assert dict(request.files) == {"data/input.txt": b"42"}
        with pytest.raises(TypeError):
            request.env["GREETING"] = "x"  # type: ignore[index]
        with pytest.raises(TypeError):
            request.files["x"] = b""  # type: ignore[index]
        assert isinstance(request.env, Mapping)

    def test_args_become_a_tuple_snapshot(self) -> None:
        args = ["--verbose"]

        request = ExecutionRequest(
            runtime=Runtime.JAVASCRIPT,
            code="",
            args=args,  # type: ignore[arg-type]
        )
        args.append("--added-later")

        assert request.args == ("--verbose",)

    def test_defaults_are_empty_and_not_shared_mutable_state(self) -> None:
        first = ExecutionRequest(runtime=Runtime.PYTHON, code="")
        second = ExecutionRequest(runtime=Runtime.PYTHON, code="")

        assert first.stdin == b""
        assert first.args == ()
        assert dict(first.env) == {}
        assert dict(first.files) == {}
        assert first.limits == Limits()
        assert first == second

    def test_requests_compare_by_value(self) -> None:
        a = ExecutionRequest(runtime=Runtime.PYTHON, code="x", env={"A": "1"})
        b = ExecutionRequest(runtime=Runtime.PYTHON, code="x", env={"A": "1"})
        assert a == b
        assert a != dataclasses.replace(a, code="y")
