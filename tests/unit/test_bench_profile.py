"""`python -m bench profile`: its hooks, stages and report (pure: no engine runs, no timing)."""

from __future__ import annotations

import pytest

from bench.profile.hooks import (
    ENGINE_HOOKS,
    SERVICER_HOOKS,
    Hook,
    HookMissing,
    Recorder,
    install,
    resolve,
)
from bench.profile.report import ProfileReport, render
from bench.profile.stages import StageMissing, summarize


class Engine:
    def step(self, value: int) -> int:
        return value + 1


def test_every_hook_names_a_method_the_engine_and_servicer_have() -> None:
    # A rename in pool/ or sandboxd/ fails here, naming the hook to update.
    for hook in (*ENGINE_HOOKS, *SERVICER_HOOKS):
        owner, method = resolve(hook.target)
        assert callable(getattr(owner, method)), hook.target


def test_install_refuses_a_missing_method_naming_it_and_wraps_nothing() -> None:
    here = __name__
    hooks = [
        Hook(f"{here}:Engine.step", "a", "b"),
        Hook(f"{here}:Engine.gone", None, "c"),
        Hook("sandboxd_pool.worker:Worker._no_such_stage", None, "d"),
    ]
    original = Engine.step
    with pytest.raises(HookMissing) as caught:
        install(hooks, Recorder())
    message = str(caught.value)
    assert f"{here}.Engine.gone" in message
    assert "sandboxd_pool.worker.Worker._no_such_stage" in message
    assert "bench/profile/hooks.py" in message
    assert Engine.step is original  # all or none


def test_a_wrapped_method_marks_only_while_armed() -> None:
    class Local:
        def run(self) -> int:
            return 7

    import sys
    import types

    module = types.ModuleType("bench_profile_test_module")
    module.Local = Local  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        recorder = Recorder()
        install([Hook("bench_profile_test_module:Local.run", "in", "out")], recorder)
        assert Local().run() == 7
        assert recorder.disarm() == {}
        recorder.arm(start=1.0)
        assert Local().run() == 7
        marks = recorder.disarm()
        assert (
            set(marks) == {"start", "in", "out"} and marks["start"] <= marks["in"] <= marks["out"]
        )
    finally:
        del sys.modules[module.__name__]


def _timeline(offset: float, node: bool = False) -> dict[str, float]:
    keys = ["call", "taken", "limits_start", "limits_done", "frame_sent", "user_start"]
    keys += ["exit_event"] if node else []
    keys += ["exit_seen", "outcome_built", "returned"]
    return {k: offset + i * 0.001 for i, k in enumerate(keys)}


def test_stages_are_consecutive_and_add_up_to_the_total() -> None:
    profile = summarize("embedded", [_timeline(10.0), _timeline(20.0)], grpc=False, node=False)
    assert [round(s.p50_ms, 6) for s in profile.stages] == [1.0] * 8
    assert profile.total is not None and round(profile.total.p50_ms, 6) == 8.0
    assert profile.started_before_sent == profile.started_after_exit == 0


def test_node_exit_event_is_split_out_when_the_program_reports_it() -> None:
    profile = summarize("node", [_timeline(1.0, node=True)], grpc=False, node=True)
    names = [s.name for s in profile.stages]
    assert "user code starts -> 'exit' event" in names
    assert "'exit' event -> exit seen" in names
    without = summarize("node", [_timeline(1.0)], grpc=False, node=True)
    assert "'exit' event -> exit seen" not in [s.name for s in without.stages]


def test_a_stage_no_execution_recorded_is_an_error_not_a_gap() -> None:
    timeline = _timeline(1.0)
    del timeline["limits_done"]
    with pytest.raises(StageMissing, match="limits_done"):
        summarize("embedded", [timeline], grpc=False, node=False)
    with pytest.raises(StageMissing, match="client_call"):
        summarize("grpc", [_timeline(1.0)], grpc=True, node=False)


def test_report_names_where_each_timestamp_comes_from() -> None:
    profile = summarize("Embedded pool, Python hello", [_timeline(5.0)], grpc=False, node=False)
    text = render(
        ProfileReport(
            command="python -m bench profile",
            machine={"date": "2026-01-01 00:00 UTC"},
            iterations=1,
            pause_ms={"python": 50.0},
            warm_workers=4,
            profiles=[profile],
        )
    )
    assert "### Embedded pool, Python hello" in text
    assert "`sandboxd_pool.worker.Worker._apply_limits (entry)`" in text
    assert "| apply limits " in text and "(sum of the stages' p50s)" in text
