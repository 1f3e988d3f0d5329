"""ZygoteClient._dispatch: routing of the zygote's messages to the pool's waiting futures.

Pure logic (no zygote process): the client is built without being started and fed messages the
way its reader thread would.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, cast

import pytest

from sandboxd_pool.config import PoolConfig
from sandboxd_pool.jail.policy import JailPlan
from sandboxd_pool.zygote import SpawnedWorker, ZygoteClient


def _client_waiting_for_spawn(spawn_id: int) -> tuple[ZygoteClient, Future[SpawnedWorker]]:
    client = ZygoteClient(PoolConfig(), cast(JailPlan, None))
    future: Future[SpawnedWorker] = Future()
    client._pending[spawn_id] = future
    return client, future


def _exited(**fields: Any) -> dict[str, Any]:
    return {"op": "exited", "pid": 4242, "status": 256, "rusage": {}, "facts": {}} | fields


def test_a_child_dying_before_it_was_reported_fails_its_spawn() -> None:
    client, future = _client_waiting_for_spawn(7)
    client._dispatch(_exited(reported_spawned=False, spawn_id=7, boot_error="no such file"), [])
    with pytest.raises(RuntimeError, match="worker died before it booted: no such file"):
        future.result(timeout=0)
    assert client._pending == {}


def test_without_a_boot_error_the_exit_status_is_the_reason() -> None:
    client, future = _client_waiting_for_spawn(3)
    client._dispatch(_exited(reported_spawned=False, spawn_id=3, boot_error=""), [])
    with pytest.raises(RuntimeError, match="exit status 256"):
        future.result(timeout=0)


def test_the_exit_of_a_reported_worker_leaves_other_spawns_waiting() -> None:
    client, future = _client_waiting_for_spawn(9)
    exit_report: Future[dict[str, Any]] = Future()
    client._exits[4242] = exit_report
    message = _exited(reported_spawned=True, spawn_id=9)
    client._dispatch(message, [])
    assert exit_report.result(timeout=0) == message
    assert not future.done()
    assert client._pending == {9: future}
