"""SECURITY.md "Service attack review" with --redis-url (async lock-out, ids, long-polls): one tenant cannot lock the others out of the
cluster's async executions, execution ids never reach Redis key names, a long-poll returns
early only with the finished state, and the Redis password can stay out of the process list.
Each test has its own real redis-server (free port) and daemons (port 0)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from e2e.daemon import Daemon, start, tenants_file

from sandboxd_client import (
    NO_RETRY,
    Client,
    ExecutionState,
    InvalidRequest,
    Limits,
    Mode,
    NotFound,
    QuotaExceeded,
    Verdict,
)

from .redis_server import RedisServer

MIB = 1024 * 1024
SLEEPER = "import time; time.sleep(300)"
LONG = Limits(
    wall_time_ms=300_000, max_output_bytes=1, max_output_files=1, max_output_files_bytes=1
)
DEFAULT_MAX_QUEUED_JOBS_PER_TENANT = 100  # settings.Settings.max_queued_jobs_per_tenant
START_TIME = "import time; print(repr(time.time()), flush=True)"
PASSWORD = "pw-only-in-a-file-9f2c"
HANDLER = "def handler(event, context):\n    return 1\n"


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(str(tmp_path / "redis"))
    os.mkdir(server.directory)
    server.start()
    yield server
    server.kill()


@pytest.fixture()
def keys_path(tmp_path: Path) -> tuple[str, dict[str, str]]:
    path = str(tmp_path / "tenants.toml")
    keys = tenants_file(
        path,
        {"hog": {"max_concurrent_executions": 2}, "victim": {}, "other": {}},
    )
    return path, keys


def node(
    redis_url: str, tenants_path: str, *extra: str, env: dict[str, str] | None = None
) -> Daemon:
    return start(
        ["--tenants", tenants_path, "--redis-url", redis_url, "--drain-grace", "5", *extra],
        env,
    )


def stopped(*daemons: Daemon) -> None:
    for daemon in daemons:
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
        errors = [e for e in daemon.logs if e.get("level") == "ERROR"]
        assert not errors, errors


def submit_until_refused(client: Client, limit: int, limits: Limits) -> tuple[list[str], str]:
    accepted: list[str] = []
    for _ in range(limit):
        try:
            accepted.append(client.submit("python", SLEEPER, limits=limits, timeout_s=60))
        except QuotaExceeded as e:
            return accepted, e.violations[0].subject
    return accepted, ""


def cancel_all(client: Client, ids: list[str]) -> None:
    for execution_id in ids:
        client.cancel_execution(execution_id, timeout_s=60)


def test_one_tenant_cannot_fill_the_cluster_queue(
    redis_server: RedisServer, keys_path: tuple[str, dict[str, str]]
) -> None:
    """The hog submits sleepers (on one node) until refused: it stops at its own share (100)
    of the cluster's 150, so the victim's Submit (on another node) is accepted and runs.
    Before the fix the hog filled the cluster-wide stream and blocked every tenant."""
    path, keys = keys_path
    nodes = [node(redis_server.url, path, "--max-queued-jobs", "150") for _ in range(2)]
    try:
        with (
            Client(nodes[0].address, api_key=keys["hog"], retry=NO_RETRY) as hog,
            Client(nodes[1].address, api_key=keys["victim"], retry=NO_RETRY) as victim,
        ):
            hogged, subject = submit_until_refused(hog, 200, LONG)
            try:
                mine = victim.submit("python", "print('mine')", timeout_s=60)
                done = victim.wait(mine, timeout_s=120)
                assert done.state is ExecutionState.DONE and done.result is not None
                assert done.result.stdout == b"mine\n"
                assert len(hogged) == DEFAULT_MAX_QUEUED_JOBS_PER_TENANT
                assert subject == "tenant:hog:async_queued_jobs"
            finally:
                cancel_all(hog, hogged)
            # the hog's share is free again once its jobs ended
            hog.cancel_execution(hog.submit("python", SLEEPER, limits=LONG, timeout_s=60))
    finally:
        stopped(*nodes)


def test_one_tenant_cannot_take_the_cluster_memory(
    redis_server: RedisServer, keys_path: tuple[str, dict[str, str]]
) -> None:
    """Jobs asking for 64 MiB outputs reserve 3 x 64 MiB each: the hog gets its share
    (--async-max-bytes-per-tenant, 256 MiB: one job), the victim's is still accepted. Before
    the fix Redis mode had no such bound."""
    path, keys = keys_path
    daemon = node(redis_server.url, path)
    big = Limits(wall_time_ms=300_000, max_output_bytes=64 * MIB)
    try:
        with (
            Client(daemon.address, api_key=keys["hog"], retry=NO_RETRY) as hog,
            Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim,
        ):
            hogged, subject = submit_until_refused(hog, 10, big)
            try:
                victim.cancel_execution(victim.submit("python", SLEEPER, limits=big, timeout_s=60))
                assert len(hogged) == 1
                assert subject == "tenant:hog:async_bytes"
            finally:
                cancel_all(hog, hogged)
    finally:
        stopped(daemon)


def test_a_tenant_at_its_limit_does_not_hold_up_the_others(
    redis_server: RedisServer, keys_path: tuple[str, dict[str, str]]
) -> None:
    """A node running four at once; the hog (allowed 2 at once) queues ten 1.5 s jobs, then the
    victim one: the victim's starts while the hog's first two still run. Before the fix the
    node's read-ahead filled with the hog's jobs held back by its limit and stopped reading,
    so the victim's job started after all ten."""
    path, keys = keys_path
    daemon = node(redis_server.url, path, "--max-concurrent", "4")
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
            assert before <= 3, (before, victim_start, sorted(hog_starts))
    finally:
        stopped(daemon)


def test_execution_ids_never_become_key_names(
    redis_server: RedisServer, keys_path: tuple[str, dict[str, str]]
) -> None:
    """An id with a suffix naming another key of the job (`:req`, `:result`) is NOT_FOUND like
    any unknown id, for its owner and for another tenant, on GetExecution and CancelExecution,
    and logs nothing. Before the fix it answered INTERNAL (a WRONGTYPE traceback in the log),
    telling an outsider that the id exists."""
    path, keys = keys_path
    daemon = node(redis_server.url, path)
    try:
        with (
            Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as owner,
            Client(daemon.address, api_key=keys["other"], retry=NO_RETRY) as other,
        ):
            real = owner.submit("python", SLEEPER, limits=LONG, timeout_s=60)
            try:
                for client in (owner, other):
                    for suffix in (":req", ":result", ":x", "*", "\n"):
                        with pytest.raises(NotFound):
                            client.get_execution(real + suffix, timeout_s=30)
                        with pytest.raises(NotFound):
                            client.cancel_execution(real + suffix, timeout_s=30)
                    for bad in (real.upper(), real[:-1], "sandboxd:jobs", "*"):
                        with pytest.raises(NotFound):
                            client.get_execution(bad, timeout_s=30)
                with pytest.raises(NotFound):
                    other.get_execution(real, timeout_s=30)
                assert owner.get_execution(real, timeout_s=30).execution_id == real
            finally:
                owner.cancel_execution(real, timeout_s=60)
    finally:
        stopped(daemon)


def test_a_long_poll_returns_early_only_with_the_finished_state(
    redis_server: RedisServer, keys_path: tuple[str, dict[str, str]]
) -> None:
    """80 short jobs, each long-polled 16 times (20 s to wait) at random moments around its
    end: every answer is DONE. The race needs a poll's thread to lose the GIL between reading
    the state and looking at its wake-up event while the job's "done" arrives; another
    tenant's large events, checked by the daemon meanwhile, keep its GIL busy as on a loaded
    node. Before the fix about 1 poll in 100 here answered RUNNING after some milliseconds."""
    path, keys = keys_path
    daemon = node(redis_server.url, path)
    stop = threading.Event()
    heavy = b"[" + b'"a,b",' * 300_000  # refused after a full scan: never closed

    def keep_busy() -> None:
        with Client(daemon.address, api_key=keys["other"], retry=NO_RETRY) as other:
            while not stop.is_set():
                with pytest.raises(InvalidRequest):
                    other.submit("python", HANDLER, mode=Mode.HANDLER, event=heavy, timeout_s=60)

    busy = [threading.Thread(target=keep_busy) for _ in range(2)]
    early: list[tuple[ExecutionState, float]] = []
    try:
        for thread in busy:
            thread.start()
        with (
            Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim,
            ThreadPoolExecutor(16) as pool,
        ):
            rng = random.Random(19)

            def poll(execution_id: str, delay_s: float) -> None:
                time.sleep(delay_s)
                asked = time.monotonic()
                state = victim.get_execution(execution_id, wait_ms=20_000, timeout_s=60).state
                if state is not ExecutionState.DONE:
                    early.append((state, time.monotonic() - asked))

            for _ in range(80):
                execution_id = victim.submit("python", "pass", timeout_s=60)
                delays = [rng.uniform(0, 0.04) for _ in range(16)]
                list(pool.map(poll, [execution_id] * len(delays), delays))
    finally:
        stop.set()
        for thread in busy:
            thread.join()
        stopped(daemon)
    assert not early, early


@pytest.mark.parametrize("how", ["file", "environment"])
def test_the_redis_password_stays_out_of_the_process_list(
    redis_server: RedisServer, keys_path: tuple[str, dict[str, str]], tmp_path: Path, how: str
) -> None:
    path, keys = keys_path
    redis_server.client().config_set("requirepass", PASSWORD)  # this test's server only
    if how == "file":
        secret = tmp_path / "redis-password"
        secret.write_text(PASSWORD + "\n")
        daemon = node(redis_server.url, path, "--redis-password-file", str(secret))
    else:
        daemon = node(redis_server.url, path, env={"SANDBOXD_REDIS_PASSWORD": PASSWORD})
    try:
        with Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim:
            done = victim.wait(victim.submit("python", "print(7)", timeout_s=60), timeout_s=60)
            assert done.result is not None and done.result.stdout == b"7\n"
        tree = [psutil.Process(daemon.proc.pid), *psutil.Process(daemon.proc.pid).children(True)]
        assert all(PASSWORD not in " ".join(p.cmdline()) for p in tree)
        assert PASSWORD not in "".join(daemon.raw_stderr)
    finally:
        stopped(daemon)
