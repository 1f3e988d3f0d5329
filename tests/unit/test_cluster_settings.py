"""`sandboxd serve` cluster settings: --redis-url and its timeouts, one message per bad value."""

from __future__ import annotations

import argparse

import pytest

from sandboxd.cluster.link import redacted
from sandboxd.settings import Settings, SettingsError, add_arguments, from_args


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv), env or {})


def test_no_redis_by_default() -> None:
    s = parse([])
    assert s.redis_url is None
    assert s.redis_visibility_timeout_s == 30.0 and s.redis_lease_s == 30.0


def test_redis_url_from_flag_or_environment() -> None:
    assert parse(["--redis-url", "redis://h:6379/1"]).redis_url == "redis://h:6379/1"
    s = parse(
        [],
        {
            "SANDBOXD_REDIS_URL": "unix:///run/redis.sock",
            "SANDBOXD_REDIS_VISIBILITY_TIMEOUT_S": "5",
            "SANDBOXD_REDIS_LEASE_S": "7.5",
        },
    )
    assert s.redis_url == "unix:///run/redis.sock"
    assert s.redis_visibility_timeout_s == 5.0 and s.redis_lease_s == 7.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--redis-url", "localhost:6379"], "--redis-url: 'localhost:6379' is not a Redis URL"),
        (
            ["--redis-url", "http://:secret@h"],
            "--redis-url: 'http://***@h' is not a Redis URL",
        ),
        (["--redis-visibility-timeout-s", "0"], "--redis-visibility-timeout-s: 0 is out of range"),
        (["--redis-lease-s", "soon"], "--redis-lease-s: 'soon' is not a number of seconds"),
    ],
)
def test_bad_cluster_settings(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError) as bad:
        parse(argv)
    assert any(message in p for p in bad.value.problems), bad.value.problems
    assert "secret" not in str(bad.value)


def test_logs_never_show_the_redis_password() -> None:
    assert redacted("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redacted("rediss://user:pw@h/0") == "rediss://user:***@h/0"
    assert redacted("redis://h:6379") == "redis://h:6379"
