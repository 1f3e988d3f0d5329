"""Watching a real daemon while something breaks under it: warm-pool and health waits, a hello
in each runtime, a program that runs until it is killed and can be found from the host."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
from e2e.daemon import Daemon
from grpc_health.v1 import health_pb2, health_pb2_grpc
from soak import metrics

from sandboxd_client import Client, ExecuteResult, Limits

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
EVENTUALLY_S = 60.0  # generous: "eventually", never a speed assertion
HELLO = {"python": "print('hello')", "javascript": "console.log('hello')"}
T = TypeVar("T")


def eventually(what: str, probe: Callable[[], T | None], timeout_s: float = EVENTUALLY_S) -> T:
    """Poll `probe` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what} (last: {last!r})")


def warm(daemon: Daemon, workers: int) -> dict[str, int]:
    """Wait until every runtime has `workers` ready workers."""
    assert daemon.metrics_port is not None
    port = daemon.metrics_port

    def full() -> dict[str, int] | None:
        ready = metrics.ready_workers(port)
        return ready if ready and all(n == workers for n in ready.values()) else None

    return eventually(f"{workers} ready workers per runtime", full)


def health(daemon: Daemon, service: str = "") -> int:
    with grpc.insecure_channel(daemon.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status: int = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        return status


def hello(client: Client, runtime: str) -> ExecuteResult:
    return client.execute(runtime, HELLO[runtime], limits=Limits(wall_time_ms=20_000), timeout_s=60)


def new_marker() -> str:
    """A process name (under 16 bytes) no other process on the machine has."""
    return "sbxf" + secrets.token_hex(4)


def sleeper(marker: str, runtime: str = "python") -> str:
    """A program that renames itself to `marker`, says so, and sleeps until killed."""
    if runtime == "python":
        return (
            "import time\n"
            f"open('/proc/self/comm', 'w').write({marker!r})\n"
            "print('started', flush=True)\n"
            "time.sleep(3600)\n"
        )
    return (
        f"require('fs').writeFileSync('/proc/self/comm', {marker!r});\n"
        "console.log('started'); setInterval(() => {}, 1000);\n"
    )


def pids_named(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/comm") as f:
                if entry.isdigit() and f.read().rstrip("\n") == marker:
                    found.append(int(entry))
        except OSError:
            continue
    return found
