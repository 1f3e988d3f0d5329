"""SECURITY.md "Service attack review", async lock-out, embedded backend: one tenant's asynchronous executions cannot lock the
others out (the node's queue, its async memory, its running slots). A hog and a victim
against a real daemon (port 0); the Redis backend's twin is tests/cluster/test_cluster_security.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxd_client import (
    NO_RETRY,
    Client,
    ExecutionState,
    Limits,
    QuotaExceeded,
    Verdict,
)

from .daemon import Daemon, start, tenants_file

MIB = 1024 * 1024
SLEEPER = "import time; time.sleep(300)"
LONG = Limits(
    wall_time_ms=300_000, max_output_bytes=1, max_output_files=1, max_output_files_bytes=1
)
DEFAULT_MAX_QUEUED_JOBS_PER_TENANT = 100  # settings.Settings.max_queued_jobs_per_tenant
START_TIME = "import time; print(repr(time.time()), flush=True)"


def stopped(daemon: Daemon) -> None:
    assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    errors = [e for e in daemon.logs if e.get("level") == "ERROR"]
    assert not errors, errors


@pytest.fixture()
def keys_path(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    path = str(tmp_path / "tenants.toml")
    keys = tenants_file(path, {"hog": {"max_concurrent_executions": 8}, "victim": {}})
    yield path, keys


def submit_until_refused(client: Client, limit: int, **kwargs: object) -> tuple[list[str], str]:
    """Submit until RESOURCE_EXHAUSTED (at most `limit` tries): (ids accepted, the subject)."""
    accepted: list[str] = []
    for _ in range(limit):
        try:
            accepted.append(client.submit("python", SLEEPER, timeout_s=60, **kwargs))  # type: ignore[arg-type]
        except QuotaExceeded as e:
            return accepted, e.violations[0].subject
    return accepted, ""


def cancel_all(client: Client, ids: list[str]) -> None:
    for execution_id in ids:
        assert client.cancel_execution(execution_id, timeout_s=60).finished


def test_one_tenant_cannot_fill_the_node_queue(keys_path: tuple[str, dict[str, str]]) -> None:
    """The hog submits sleepers until refused: it stops at its own share
    (--max-queued-jobs-per-tenant, 100), not at the node's queue (150 here), so the victim's
    Submit is accepted and runs. Before the fix the hog filled the node's queue and every
    other tenant's Submit was refused for as long as the sleepers took."""
    path, keys = keys_path
    daemon = start(["--tenants", path, "--max-queued-jobs", "150"])
    try:
        with (
            Client(daemon.address, api_key=keys["hog"], retry=NO_RETRY) as hog,
            Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim,
        ):
            hogged, subject = submit_until_refused(hog, 200, limits=LONG)
            try:
                execution_id = victim.submit("python", "print('mine')", timeout_s=60)
                done = victim.wait(execution_id, timeout_s=120)
                assert done.state is ExecutionState.DONE and done.result is not None
                assert done.result.stdout == b"mine\n"
                assert len(hogged) == DEFAULT_MAX_QUEUED_JOBS_PER_TENANT
                assert subject == "tenant:hog:async_queued_jobs"
            finally:
                cancel_all(hog, hogged)
            # its own finished jobs free the hog's share again
            hog.cancel_execution(hog.submit("python", SLEEPER, limits=LONG, timeout_s=60))
    finally:
        stopped(daemon)


def test_one_tenant_cannot_fill_the_node_async_memory(
    keys_path: tuple[str, dict[str, str]],
) -> None:
    """Jobs asking for 64 MiB outputs reserve 3 x 64 MiB each: the hog gets its share
    (--async-max-bytes-per-tenant, 256 MiB: one job), the victim's such job is still accepted.
    Before the fix five of the hog's filled the node's 1 GiB and the victim was refused."""
    path, keys = keys_path
    daemon = start(["--tenants", path])
    big = Limits(wall_time_ms=300_000, max_output_bytes=64 * MIB)
    try:
        with (
            Client(daemon.address, api_key=keys["hog"], retry=NO_RETRY) as hog,
            Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim,
        ):
            hogged, subject = submit_until_refused(hog, 10, limits=big)
            try:
                mine = victim.submit("python", SLEEPER, limits=big, timeout_s=60)
                victim.cancel_execution(mine, timeout_s=60)
                assert len(hogged) == 1
                assert subject == "tenant:hog:async_bytes"
            finally:
                cancel_all(hog, hogged)
    finally:
        stopped(daemon)


def test_dispatch_is_fair_between_tenants(keys_path: tuple[str, dict[str, str]]) -> None:
    """A node running two jobs at once; the hog (allowed 8) queues ten 1.5 s jobs, then the
    victim one: the victim's starts as soon as a node slot frees, before the hog's backlog.
    Before the fix jobs started in submission order: the victim's after all ten."""
    path, keys = keys_path
    daemon = start(["--tenants", path, "--max-concurrent", "2"])
    try:
        with (
            Client(daemon.address, api_key=keys["hog"], retry=NO_RETRY) as hog,
            Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim,
        ):
            backlog = [
                hog.submit("python", START_TIME + "; time.sleep(1.5)", timeout_s=60)
                for _ in range(10)
            ]
            mine = victim.submit("python", START_TIME, timeout_s=60)

            def started_at(client: Client, execution_id: str) -> float:
                done = client.wait(execution_id, timeout_s=120)
                assert done.result is not None and done.result.verdict is Verdict.OK, done
                return float(done.result.stdout)

            victim_start = started_at(victim, mine)
            hog_starts = [started_at(hog, execution_id) for execution_id in backlog]
            before = sum(1 for t in hog_starts if t < victim_start)
            # the two running when the victim submitted, and at most one that took a slot
            # freed in the same instant as the victim's
            assert before <= 3, (before, victim_start, sorted(hog_starts))
    finally:
        stopped(daemon)
