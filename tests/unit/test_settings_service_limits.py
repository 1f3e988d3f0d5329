"""The settings of the service attack review (SECURITY.md; service limits, per-tenant async shares, the Redis password kept
out of the URL): defaults, flags and environment variables, one message per bad value."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sandboxd.settings import Settings, SettingsError, add_arguments, from_args

MIB = 1024 * 1024
REDIS = ["--redis-url", "redis://127.0.0.1:6379/0"]


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv), env or {})


def problems(argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as info:
        parse(argv, env)
    return info.value.problems


def test_defaults() -> None:
    s = parse([])
    assert (s.max_calls_per_tenant, s.max_public_calls) == (32, 16)
    assert (s.public_call_max_s, s.idle_timeout_s) == (10.0, 30.0)
    assert s.max_streams_per_connection == 100
    assert (s.max_queued_jobs_per_tenant, s.async_max_bytes_per_tenant) == (100, 256 * MIB)
    assert s.redis_password is None and s.redis_password_file is None


@pytest.mark.parametrize(
    ("flag", "env", "value", "field", "parsed"),
    [
        ("--max-calls-per-tenant", "SANDBOXD_MAX_CALLS_PER_TENANT", "5", "max_calls_per_tenant", 5),
        ("--max-public-calls", "SANDBOXD_MAX_PUBLIC_CALLS", "3", "max_public_calls", 3),
        ("--public-call-max-s", "SANDBOXD_PUBLIC_CALL_MAX_S", "2.5", "public_call_max_s", 2.5),
        ("--idle-timeout-s", "SANDBOXD_IDLE_TIMEOUT_S", "0.5", "idle_timeout_s", 0.5),
        (
            "--max-streams-per-connection",
            "SANDBOXD_MAX_STREAMS_PER_CONNECTION",
            "8",
            "max_streams_per_connection",
            8,
        ),
        (
            "--max-queued-jobs-per-tenant",
            "SANDBOXD_MAX_QUEUED_JOBS_PER_TENANT",
            "7",
            "max_queued_jobs_per_tenant",
            7,
        ),
        (
            "--async-max-bytes-per-tenant",
            "SANDBOXD_ASYNC_MAX_BYTES_PER_TENANT",
            str(16 * MIB),
            "async_max_bytes_per_tenant",
            16 * MIB,
        ),
    ],
)
def test_flag_and_environment(flag: str, env: str, value: str, field: str, parsed: object) -> None:
    assert getattr(parse([flag, value]), field) == parsed
    assert getattr(parse([], {env: value}), field) == parsed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-calls-per-tenant", "0"], "--max-calls-per-tenant: 0 is out of range"),
        (["--max-public-calls", "x"], "--max-public-calls: 'x' is not an integer"),
        (["--public-call-max-s", "0"], "--public-call-max-s: 0 is out of range"),
        (["--idle-timeout-s", "nan"], "--idle-timeout-s: nan is out of range"),
        (["--max-streams-per-connection", "0"], "is out of range"),
        (["--max-queued-jobs-per-tenant", "0"], "is out of range"),
        (["--async-max-bytes-per-tenant", "1024"], "is out of range"),
    ],
)
def test_bad_values(argv: list[str], message: str) -> None:
    assert any(message in p for p in problems(argv)), problems(argv)


class TestRedisPassword:
    def test_from_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "password"
        path.write_text("s3cret\n")
        s = parse([*REDIS, "--redis-password-file", str(path)])
        assert s.redis_password == "s3cret"
        assert "s3cret" not in repr(s)

    def test_from_the_environment(self) -> None:
        s = parse(REDIS, {"SANDBOXD_REDIS_PASSWORD": "s3cret"})
        assert s.redis_password == "s3cret"
        assert "s3cret" not in repr(s)

    def test_the_file_from_the_environment(self, tmp_path: Path) -> None:
        path = tmp_path / "password"
        path.write_text("s3cret")
        s = parse(REDIS, {"SANDBOXD_REDIS_PASSWORD_FILE": str(path)})
        assert s.redis_password == "s3cret"

    def test_missing_or_empty_file(self, tmp_path: Path) -> None:
        assert any("cannot read" in p for p in problems([*REDIS, "--redis-password-file", "/no"]))
        empty = tmp_path / "empty"
        empty.write_text("\n")
        assert any("is empty" in p for p in problems([*REDIS, "--redis-password-file", str(empty)]))

    def test_in_one_place_only(self, tmp_path: Path) -> None:
        path = tmp_path / "password"
        path.write_text("a")
        both = problems(
            [*REDIS, "--redis-password-file", str(path)], {"SANDBOXD_REDIS_PASSWORD": "b"}
        )
        assert any("both give the Redis password" in p for p in both), both
        in_url = problems(
            ["--redis-url", "redis://:a@127.0.0.1:6379/0"], {"SANDBOXD_REDIS_PASSWORD": "b"}
        )
        assert any("--redis-url has a password too" in p for p in in_url), in_url

    def test_needs_a_redis_url(self) -> None:
        found = problems([], {"SANDBOXD_REDIS_PASSWORD": "b"})
        assert any("without --redis-url" in p for p in found), found
