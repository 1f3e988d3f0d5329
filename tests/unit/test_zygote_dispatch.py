"""ZygoteClient._dispatch: routing of the zygote's messages to the pool's waiting futures.

Pure logic (no zygote process): the client is built without being started and fed messages the
way its reader thread would.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, cast

import pytest

from sandboxd_pool import zygote_protocol as proto
from sandboxd_pool.config import PoolConfig
from sandboxd_pool.jail.policy import JailPlan
from sandboxd_pool.zygote import SpawnedWorker, ZygoteClient


def _client_waiting_for_spawn(spawn_id: int) -> tuple[ZygoteClient, Future[SpawnedWorker]]:
    client = ZygoteClient(PoolConfig(), cast(JailPlan, None))
    future: Future[SpawnedWorker] = Future()
    client._pending[spawn_id] = future
    return client, future


def _exited(**fields: Any) -> proto.Exited:
    return proto.Exited(pid=4242, status=256, **fields)


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
    exit_report: Future[proto.Exited] = Future()
    client._exits[4242] = exit_report
    message = _exited(reported_spawned=True, spawn_id=9)
    client._dispatch(message, [])
    assert exit_report.result(timeout=0) == message
    assert not future.done()
    assert client._pending == {9: future}


def test_messages_round_trip_through_their_wire_form() -> None:
    import json

    from sandboxd_pool.jail.cgroups import CgroupFacts

    messages: list[proto.Message] = [
        proto.Spawn(id=1, runtime="python"),
        proto.Shutdown(),
        proto.Hello(pid=10, swept=("z1-2",), engine="/opt/engine"),
        proto.Spawned(
            id=1, pid=11, slot=0, runtime="python", cgroup={"memory": "/x"}, program_pid=12
        ),
        proto.SpawnFailed(id=2, error="OSError: no"),
        proto.Exited(
            pid=11,
            status=9,
            rusage=proto.Rusage(utime_us=1, stime_us=2, maxrss_kb=3),
            facts=CgroupFacts(peak_memory_bytes=4, oom_kills=1, cpu_time_ns=5, pids_limit_hits=6),
            blocked_syscall="ptrace",
        ),
        proto.Exited(pid=11, status=0),
    ]
    for message in messages:
        wire = json.loads(
            json.dumps(
                {"op": proto._OP_OF[type(message)], **__import__("dataclasses").asdict(message)}
            )
        )
        assert proto.decode(wire) == message
