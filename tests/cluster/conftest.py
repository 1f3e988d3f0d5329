"""Fixtures for the cluster tests: one real `redis-server` (AOF, `appendfsync always`) on a
free port, and three real `sandboxd serve --redis-url` daemons on port 0 sharing it.

Tenants (one file shared by every node):
    alpha  at most 2 executions at once across the cluster
    beta   at most 16 at once
    gamma  (only for "another tenant's id is NOT_FOUND")
    delta  at most 0.2 executions per second (a burst of 1, then one per 5 s)
    epsilon at most 0.5 CPU seconds per minute
Nodes run at most 4 executions each; the visibility timeout and lease time are 3 s so that a
killed node's jobs are taken over within seconds."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from e2e.daemon import Daemon, start, tenants_file

from sandboxd_client import Client

from .redis_server import RedisServer

NODE_MAX_CONCURRENT = 4
VISIBILITY_S = 3
LEASE_S = 3


@dataclass
class Cluster:
    redis: RedisServer
    nodes: list[Daemon]
    keys: dict[str, str]
    tenants_path: str

    def client(self, node: int, tenant: str = "beta") -> Client:
        return Client(self.nodes[node].address, api_key=self.keys[tenant])

    def start_node(self, extra: Sequence[str] = ()) -> Daemon:
        return start_node(self.redis, self.tenants_path, extra)


def start_node(redis: RedisServer, tenants_path: str, extra: Sequence[str] = ()) -> Daemon:
    return start(
        [
            "--tenants",
            tenants_path,
            "--redis-url",
            redis.url,
            "--max-concurrent",
            str(NODE_MAX_CONCURRENT),
            "--redis-visibility-timeout-s",
            str(VISIBILITY_S),
            "--redis-lease-s",
            str(LEASE_S),
            "--drain-grace",
            "5",
            # one tenant submits 200 jobs at once here (the default share is 100 jobs and
            # 256 MiB, each job reserving 3 x 1 MiB of output)
            "--max-queued-jobs-per-tenant",
            "1000",
            "--async-max-bytes-per-tenant",
            str(4 * 1024**3),
            *extra,
        ],
        warm=2,
    )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-cluster-") as tmp:
        redis = RedisServer(os.path.join(tmp, "redis"))
        os.mkdir(redis.directory)
        path = os.path.join(tmp, "tenants.toml")
        keys = tenants_file(
            path,
            {
                "alpha": {"runtimes": ["python"], "max_concurrent_executions": 2},
                "beta": {"max_concurrent_executions": 16},
                "gamma": {"max_concurrent_executions": 4},
                "delta": {"max_executions_per_second": 0.2},
                "epsilon": {"max_cpu_seconds_per_minute": 0.5},
            },
        )
        redis.start()
        nodes: list[Daemon] = []
        try:
            with ThreadPoolExecutor(3) as starter:
                for node in starter.map(lambda _: start_node(redis, path), range(3)):
                    nodes.append(node)
            yield Cluster(redis, nodes, keys, path)
        finally:
            codes = []
            for node in nodes:
                try:
                    codes.append(node.stop())
                except Exception:
                    codes.append(-1)
            redis.kill()
        assert codes == [0] * len(nodes), codes
