"""What the cluster tidies up after a node or Redis went away, on a real redis-server and real
daemons of their own (not the session's cluster, whose Redis these tests kill):

- the job group's consumer of a node killed with SIGKILL is removed once its entries were
  taken over and it stayed idle for the grace (3 visibility timeouts); a live node's consumer
  stays; a node that drains removes its own;
- concurrency leases that expired while Redis was down, and slots counted node-locally
  during the outage, are taken again when Redis returns: the tenant's running executions
  count again and a new one is refused until it is under its limit."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest
from e2e.daemon import Daemon, tenants_file

from sandboxd_client import (
    NO_RETRY,
    Client,
    ExecutionState,
    Limits,
    Output,
    QuotaExceeded,
    Verdict,
)

from .conftest import start_node
from .redis_server import RedisServer
from .test_cluster import eventually, wait_done

STREAM, GROUP = "sandboxd:jobs", "sandboxd"
VISIBILITY = ["--redis-visibility-timeout-s", "1"]
LEASE = ["--redis-lease-s", "1"]
LONG = "import time\nprint('running', flush=True)\ntime.sleep(120)\n"
SWEPT_LOG = "removed the job consumers of nodes that are gone"
RETAKEN_LOG = (
    "concurrency leases taken again after Redis was unreachable: executions still running "
    "count against their tenant's limit again"
)


@dataclass
class Site:
    redis: RedisServer
    tenants_path: str
    keys: dict[str, str]

    def node(self, *extra: str) -> Daemon:
        return start_node(self.redis, self.tenants_path, extra)


@pytest.fixture()
def site() -> Iterator[Site]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-recovery-") as tmp:
        redis = RedisServer(os.path.join(tmp, "redis"))
        os.mkdir(redis.directory)
        path = os.path.join(tmp, "tenants.toml")
        keys = tenants_file(path, {"alpha": {"max_concurrent_executions": 2}, "beta": {}})
        redis.start()
        try:
            yield Site(redis, path, keys)
        finally:
            redis.kill()


def node_name(node: Daemon) -> str:
    return str(node.wait_for_log("cluster mode")["node"])


def consumers(site: Site) -> dict[str, int]:
    """The group's consumers: name -> pending entries."""
    r = site.redis.client()
    try:
        return {c["name"].decode(): int(c["pending"]) for c in r.xinfo_consumers(STREAM, GROUP)}
    finally:
        r.close()


def kill(node: Daemon) -> None:
    """SIGKILL (no drain, nothing given back), then wait for its zygote and workers to go."""
    tree = psutil.Process(node.proc.pid).children(recursive=True)
    node.proc.kill()
    node.proc.wait()
    eventually(
        lambda: not [p for p in tree if p.is_running() and p.status() != "zombie"],
        30,
        "the killed node's zygote and workers are gone",
    )


def test_the_consumer_of_a_killed_node_is_removed_after_the_grace(site: Site) -> None:
    doomed = site.node(*VISIBILITY)
    survivor: Daemon | None = None
    try:
        doomed_name = node_name(doomed)
        with Client(doomed.address, api_key=site.keys["beta"], retry=NO_RETRY) as c:
            execution_id = c.submit("python", "import time; time.sleep(3); print('ran')")
            eventually(
                lambda: c.get_execution(execution_id).state is ExecutionState.RUNNING,
                30,
                "the job runs on the doomed node",
            )
        assert consumers(site) == {doomed_name: 1}
        kill(doomed)
        survivor = site.node(*VISIBILITY)
        survivor_name = node_name(survivor)
        with Client(survivor.address, api_key=site.keys["beta"], retry=NO_RETRY) as c:
            execution = wait_done(c, execution_id)  # taken over after the visibility timeout
        assert execution.result is not None and execution.result.verdict is Verdict.OK
        assert execution.result.stdout == b"ran\n"
        entry = survivor.wait_for_log(SWEPT_LOG, timeout_s=60)
        assert entry["consumers"] == [doomed_name] and entry["idle_s"] == 3
        assert consumers(site) == {survivor_name: 0}
        time.sleep(4)  # longer than the grace: a live, idle node's consumer stays
        assert consumers(site) == {survivor_name: 0}
        assert survivor.stop() == 0
        assert consumers(site) == {}  # a node that drained removed its own at once
    finally:
        for node in (doomed, survivor):
            if node is not None and node.proc.poll() is None:
                node.stop()


def _started(events: Iterator[object]) -> None:
    for event in events:
        if isinstance(event, Output) and event.data == b"running\n":
            return
    raise AssertionError("the execution never started")


def test_leases_expired_during_a_redis_outage_are_taken_again(site: Site) -> None:
    """alpha may run 2 at once cluster-wide. Node a runs 2; Redis dies long enough for their
    leases to expire; meanwhile node b runs a third on its node-local count. When Redis is
    back all 3 are counted again, so alpha gets nothing new anywhere until it is under 2."""
    a, b = site.node(*LEASE), site.node(*LEASE)
    streams: list[Iterator[object]] = []
    clients = [Client(n.address, api_key=site.keys["alpha"], retry=NO_RETRY) for n in (a, b)]
    r = site.redis.client()
    try:
        limits = Limits(wall_time_ms=150_000)
        for _ in range(2):
            streams.append(iter(clients[0].stream("python", LONG, limits=limits, timeout_s=200)))
            _started(streams[-1])
        assert r.zcard("sandboxd:conc:alpha") == 2
        with pytest.raises(QuotaExceeded):
            clients[1].execute("python", "print(1)", timeout_s=60)
        r.close()
        site.redis.kill()
        time.sleep(2.5)  # the leases (1 s) and their set (2 s) expire
        streams.append(iter(clients[1].stream("python", LONG, limits=limits, timeout_s=200)))
        _started(streams[-1])  # admitted on b's node-local count: Redis is down
        site.redis.start()
        r = site.redis.client()
        eventually(lambda: r.zcard("sandboxd:conc:alpha") == 3, 30, "all 3 counted again")
        assert a.wait_for_log(RETAKEN_LOG)["leases_retaken"] == 2
        assert b.wait_for_log(RETAKEN_LOG)["leases_retaken"] == 1
        for client in clients:
            with pytest.raises(QuotaExceeded) as info:
                client.execute("python", "print(1)", timeout_s=60)
            assert "already runs 3 executions across the cluster" in info.value.message
        for events in streams:  # cancel them: their workers are killed, their leases given back
            events.close()  # type: ignore[attr-defined]
        eventually(lambda: r.zcard("sandboxd:conc:alpha") == 0, 30, "leases given back")
        assert clients[1].execute("python", "print(1)", timeout_s=60).verdict is Verdict.OK
    finally:
        for events in streams:
            events.close()  # type: ignore[attr-defined]
        for client in clients:
            client.close()
        r.close()
        if site.redis.proc is None or site.redis.proc.poll() is not None:
            site.redis.start()
        for node in (a, b):
            assert node.stop() == 0
