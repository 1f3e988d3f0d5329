"""`sandboxd serve` settings: flags, environment variables, one message per bad value."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sandboxd.settings import Settings, SettingsError, add_arguments, from_args


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv), env or {})


def test_defaults() -> None:
    s = parse([])
    assert s.listen == "127.0.0.1:50051"
    assert s.max_message_bytes == 64 * 1024 * 1024
    assert s.tenants_file is None and s.metrics_port is None
    assert s.listens_on_loopback_only


def test_env_and_flag_precedence() -> None:
    s = parse(["--warm-workers", "3"], {"SANDBOXD_WARM_WORKERS": "7", "SANDBOXD_METRICS_PORT": "0"})
    assert s.warm_workers_per_runtime == 3
    assert s.metrics_port == 0


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--max-message-bytes", "abc"], {}, "--max-message-bytes: 'abc' is not an integer"),
        ([], {"SANDBOXD_WARM_WORKERS": "-1"}, "SANDBOXD_WARM_WORKERS: -1 is out of range"),
        (["--listen", "nohost"], {}, "is not HOST:PORT"),
        (
            ["--listen", "0.0.0.0:50051"],
            {},
            "refusing to serve 0.0.0.0:50051 without a tenants file",
        ),
        (["--tenants", "/nonexistent/t.toml"], {}, "sandboxd tenants add"),
        (["--tls-cert", "/x"], {}, "--tls-cert and --tls-key must be given together"),
        (["--runtimes", "python,ruby"], {}, "each runtime must be 'python' or 'javascript'"),
        (["--drain-grace", "-1"], {}, "out of range"),
        (["--node", "node"], {}, "must be an absolute path"),
        (["--log-level", "loud"], {}, "is not DEBUG, INFO, WARNING or ERROR"),
        (["--result-retention-s", "0.5"], {}, "0.5 is out of range [1, 604800] seconds"),
        ([], {"SANDBOXD_RESULT_RETENTION_S": "soon"}, "'soon' is not a number of seconds"),
        (["--result-retention-s", "nan"], {}, "out of range"),
        (["--max-queued-jobs", "0"], {}, "--max-queued-jobs: 0 is out of range"),
        (["--async-max-bytes", "1024"], {}, "--async-max-bytes: 1024 is out of range"),
    ],
)
def test_bad_values(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse(argv, env)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported() -> None:
    with pytest.raises(SettingsError) as info:
        parse(["--max-concurrent", "0", "--metrics-port", "70000"])
    assert len(info.value.problems) == 2


def test_loopback_detection(tmp_path: Path) -> None:
    assert parse(["--listen", "[::1]:0"]).listens_on_loopback_only
    assert parse(["--listen", "localhost:0"]).listens_on_loopback_only
    assert parse(["--listen", f"unix:{tmp_path}/s.sock"]).listens_on_loopback_only
    tenants = tmp_path / "t.toml"
    tenants.write_text("")
    s = parse(["--listen", "0.0.0.0:0", "--tenants", str(tenants)])
    assert not s.listens_on_loopback_only


def test_async_settings_defaults_and_environment() -> None:
    s = parse([])
    assert s.result_retention_s == 3600.0
    assert s.max_queued_jobs == 1000
    assert s.async_max_bytes == 1024 * 1024 * 1024
    s = parse(
        ["--max-queued-jobs", "5"],
        {
            "SANDBOXD_RESULT_RETENTION_S": "2.5",
            "SANDBOXD_MAX_QUEUED_JOBS": "7",
            "SANDBOXD_ASYNC_MAX_BYTES": str(32 * 1024 * 1024),
        },
    )
    assert s.result_retention_s == 2.5
    assert s.max_queued_jobs == 5
    assert s.async_max_bytes == 32 * 1024 * 1024
