"""The `sandboxd` command line, with the engine replaced by a fake (no jail needed)."""

from __future__ import annotations

from types import TracebackType

import pytest

import sandboxd
import sandboxd_pool
from sandboxd.cli.main import main
from sandboxd_pool import types
from sandboxd_pool.errors import RuntimeUnavailable


class FakePool:
    """Answers every request with a canned outcome and records what it was asked."""

    requests: list[types.ExecutionRequest]
    verdict = types.Verdict.OK
    fail_on_enter = False

    def __init__(self) -> None:
        FakePool.requests = []

    def __enter__(self) -> FakePool:
        if self.fail_on_enter:
            raise RuntimeUnavailable("javascript", "node not found")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def execute(self, request: types.ExecutionRequest) -> types.Outcome:
        FakePool.requests.append(request)
        return types.Outcome(
            verdict=self.verdict,
            exit_code=0,
            stdout=f"hello from {request.runtime.value}\n".encode(),
            usage=types.Usage(wall_time_us=2_500, cpu_time_us=1_000, peak_memory_bytes=8 << 20),
        )


@pytest.fixture
def fake_pool(monkeypatch: pytest.MonkeyPatch) -> type[FakePool]:
    monkeypatch.setattr(FakePool, "verdict", types.Verdict.OK)
    monkeypatch.setattr(FakePool, "fail_on_enter", False)
    monkeypatch.setattr(sandboxd_pool, "Pool", FakePool, raising=False)
    # The public names the CLI imports from the package, in case it does not export them yet.
    monkeypatch.setattr(sandboxd_pool, "ExecutionRequest", types.ExecutionRequest, raising=False)
    monkeypatch.setattr(sandboxd_pool, "Runtime", types.Runtime, raising=False)
    return FakePool


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"sandboxd {sandboxd.__version__}"


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_demo_runs_one_python_and_one_javascript_hello(
    fake_pool: type[FakePool], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0

    assert [r.runtime for r in fake_pool.requests] == [
        types.Runtime.PYTHON,
        types.Runtime.JAVASCRIPT,
    ]
    out = capsys.readouterr().out
    assert "== Python ==" in out
    assert "== JavaScript ==" in out
    assert out.count("verdict: OK (exit 0)") == 2
    assert "stdout:  hello from python" in out
    assert "stdout:  hello from javascript" in out
    assert "wall 2.5 ms, cpu 1.0 ms, peak memory 8.0 MiB" in out


def test_demo_fails_when_a_verdict_is_not_ok(
    fake_pool: type[FakePool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_pool, "verdict", types.Verdict.RUNTIME_ERROR)
    assert main(["demo"]) == 1


def test_demo_reports_engine_errors_without_a_traceback(
    fake_pool: type[FakePool],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(fake_pool, "fail_on_enter", True)

    assert main(["demo"]) == 1

    err = capsys.readouterr().err
    assert "RuntimeUnavailable: runtime javascript unavailable: node not found" in err
    assert "Traceback" not in err
