"""SECURITY.md "Service attack review", starvation and memory before authentication: callers without a valid key, and idle calls, cannot take what
tenants need (server threads, memory). Each test starts its own daemon (port 0)."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from sandboxd_client import NO_RETRY, Client
from sandboxd_client.proto import sandbox_pb2 as pb

from .attack import Attack, PeakRss, latencies, median, outcome, wait_settled
from .daemon import Daemon, start, tenants_file

EXECUTE = "/sandboxd.v1.Sandbox/Execute"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
ATTACKERS = 120
DEFAULT_MAX_CALLS_PER_TENANT = 32  # settings.Settings.max_calls_per_tenant
DEFAULT_MAX_PUBLIC_CALLS = 16  # settings.Settings.max_public_calls
MIB = 1024 * 1024


@pytest.fixture()
def tenants(tmp_path: Path) -> tuple[str, dict[str, str]]:
    path = str(tmp_path / "tenants.toml")
    return path, tenants_file(path, {"victim": {}, "mallory": {}})


def stopped(daemon: Daemon) -> None:
    assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    errors = [e for e in daemon.logs if e.get("level") == "ERROR"]
    assert not errors, errors


def quota_subject(call: Any) -> str:
    status = rpc_status.from_call(call)
    assert status is not None
    for detail in status.details:
        failure = error_details_pb2.QuotaFailure()
        if detail.Unpack(failure):
            return str(failure.violations[0].subject)
    raise AssertionError(f"no QuotaFailure in {status}")


def open_calls_metric(daemon: Daemon, kind: str) -> float:
    assert daemon.metrics_port
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    match = re.search(rf'^sandboxd_open_calls{{kind="{kind}"}} (\S+)$', text, re.M)
    assert match, text
    return float(match.group(1))


def test_calls_without_a_body_or_a_key_do_not_starve_another_tenant(
    tenants: tuple[str, dict[str, str]],
) -> None:
    """120 calls whose body never arrives without a key, 120 with a bogus key, 120 with
    another tenant's valid key, 120 idle reflection streams and 120 health checks without a
    body, all open at once: the victim's hello answers within its normal latency. Before the
    fix each of these took a server thread until the pool was gone (the hello then ended
    DEADLINE_EXCEEDED)."""
    path, keys = tenants
    daemon = start(["--tenants", path])
    try:
        with Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim:
            latencies(victim, 3)  # warm
            baseline = median(latencies(victim, 10))
            with Attack(daemon.address) as attack:

                def opened(method: str, key: str | None) -> list[Any]:
                    # two connections of 60: within --max-streams-per-connection (100), so
                    # every call reaches the daemon
                    half = ATTACKERS // 2
                    return attack.bodiless(method, half, key) + attack.bodiless(method, half, key)

                no_key = opened(EXECUTE, None)
                bogus = opened(EXECUTE, "sbx_bogus")
                mallory = opened(EXECUTE, keys["mallory"])
                reflection = attack.reflection_streams(ATTACKERS // 2)
                reflection += attack.reflection_streams(ATTACKERS // 2)
                health = opened(HEALTH_CHECK, None)
                for calls, still_open in (
                    (no_key + bogus, 0),
                    (mallory, DEFAULT_MAX_CALLS_PER_TENANT),
                    (reflection + health, DEFAULT_MAX_PUBLIC_CALLS),
                ):
                    wait_settled(calls, still_open)

                during = latencies(victim, 10, timeout_s=max(10.0, 200 * baseline))
                assert median(during) <= 20 * baseline, (baseline, during)

                assert Counter(map(outcome, no_key + bogus)) == {"UNAUTHENTICATED": 2 * ATTACKERS}
                assert Counter(map(outcome, mallory)) == {
                    "open": DEFAULT_MAX_CALLS_PER_TENANT,
                    "RESOURCE_EXHAUSTED": ATTACKERS - DEFAULT_MAX_CALLS_PER_TENANT,
                }
                refused = [c for c in mallory if c.done()]
                assert {quota_subject(c) for c in refused} == {"tenant:mallory:open_calls"}
                public = Counter(map(outcome, reflection + health))
                assert public == {
                    "open": DEFAULT_MAX_PUBLIC_CALLS,
                    "RESOURCE_EXHAUSTED": 2 * ATTACKERS - DEFAULT_MAX_PUBLIC_CALLS,
                }
            # the attacker's calls are over: everything is free again
            assert victim.execute("python", "print(2)").stdout == b"2\n"
    finally:
        stopped(daemon)


def test_a_request_without_a_valid_key_is_refused_before_its_body_is_buffered(
    tenants: tuple[str, dict[str, str]],
) -> None:
    """Sixteen concurrent 64 MiB requests with a bogus key cost a daemon less memory than one
    64 MiB request of a tenant; sixteen concurrent 64 MiB health checks (which need no key,
    and are read one at a time and refused past 64 KiB) less than three. Each figure is the
    peak RSS rise of a daemon started for it alone (psutil), so none reuses memory another
    phase freed. Before the fix the bogus-key requests raised the RSS by ~1 GB before each
    was refused, and the health checks were all read at once (~3 GB)."""
    path, keys = tenants
    execute = pb.ExecuteRequest(
        runtime=pb.RUNTIME_PYTHON, code="import sys; sys.stdin.buffer.read()", stdin=b"x" * 64 * MIB
    ).SerializeToString()
    health = health_pb2.HealthCheckRequest(service="x" * 64 * MIB).SerializeToString()

    def rise(key: str | None, count: int, method: str, body: bytes) -> tuple[int, set[str]]:
        daemon = start(["--tenants", path])
        try:
            metadata = (("authorization", f"Bearer {key}"),) if key else ()
            with Attack(daemon.address) as attack:
                channels = [attack.channel() for _ in range(count)]
                peak = PeakRss(daemon.proc.pid)
                futures = [
                    c.unary_unary(method, lambda x: x, lambda x: x).future(
                        body, metadata=metadata, timeout=120
                    )
                    for c in channels
                ]
                codes = set()
                for future in futures:
                    try:
                        future.result()
                        codes.add("OK")
                    except grpc.RpcError as e:
                        codes.add(e.code().name)
                return peak.stop(), codes
        finally:
            stopped(daemon)

    accepted, codes = rise(keys["victim"], 1, EXECUTE, execute)
    assert codes == {"OK"}
    bogus, codes = rise("sbx_bogus", 16, EXECUTE, execute)
    assert codes == {"UNAUTHENTICATED"}
    public, codes = rise(None, 16, HEALTH_CHECK, health)
    assert codes == {"RESOURCE_EXHAUSTED"}
    assert bogus < accepted, (bogus / MIB, accepted / MIB)
    assert public < 3 * accepted, (public / MIB, accepted / MIB)


def test_idle_calls_and_public_calls_end(tenants: tuple[str, dict[str, str]]) -> None:
    """A call whose request never arrives ends after --idle-timeout-s, a reflection stream or a
    health Watch after --public-call-max-s, each with DEADLINE_EXCEEDED saying why; their
    slots are free again afterwards."""
    path, keys = tenants
    daemon = start(
        [
            *("--tenants", path, "--idle-timeout-s", "1", "--public-call-max-s", "1"),
            *("--max-calls-per-tenant", "2", "--max-public-calls", "2"),
        ]
    )
    try:
        with Attack(daemon.address) as attack:
            health_stub: Any = health_pb2_grpc.HealthStub(attack.channel())
            watch = health_stub.Watch(health_pb2.HealthCheckRequest(service=""))
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            (idle,) = attack.bodiless(EXECUTE, 1, keys["mallory"])
            (reflection,) = attack.reflection_streams(1)
            for call, setting in ((idle, "--idle-timeout-s"), (reflection, "--public-call-max-s")):
                wait_settled([call], 0, timeout_s=60)
                assert call.code() is grpc.StatusCode.DEADLINE_EXCEEDED, call
                assert setting in call.details()
            with pytest.raises(grpc.RpcError) as info:
                list(watch)
            assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 30
        while open_calls_metric(daemon, "public") or open_calls_metric(daemon, "tenant"):
            assert time.monotonic() < deadline, "the ended calls are still counted"
            time.sleep(0.05)
        with Client(daemon.address, api_key=keys["mallory"], retry=NO_RETRY) as mallory:
            assert mallory.execute("python", "print(3)").stdout == b"3\n"
        with grpc.insecure_channel(daemon.address) as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stopped(daemon)


def test_an_idle_public_call_holds_up_health_checks_only_briefly(
    tenants: tuple[str, dict[str, str]],
) -> None:
    """Public requests are read one at a time; one that never arrives is given up after a
    couple of seconds (its call ends with DEADLINE_EXCEEDED), so a health check behind it is
    answered."""
    path, _ = tenants
    daemon = start(["--tenants", path])
    try:
        with Attack(daemon.address) as attack:
            (reflection,) = attack.reflection_streams(1)
            health: Any = health_pb2_grpc.HealthStub(attack.channel())
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            wait_settled([reflection], 0)
            assert reflection.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert "no request message arrived" in reflection.details()
    finally:
        stopped(daemon)


def test_calls_per_connection_are_bounded(tenants: tuple[str, dict[str, str]]) -> None:
    """With --max-streams-per-connection 4 a connection holding 10 calls without a body has
    only 4 of them at the server (the client waits with the rest); another connection is
    served."""
    path, keys = tenants
    daemon = start(["--tenants", path, "--max-streams-per-connection", "4"])
    try:
        with Attack(daemon.address) as attack:
            calls = attack.bodiless(EXECUTE, 10, keys["mallory"])
            deadline = time.monotonic() + 30
            while open_calls_metric(daemon, "tenant") < 4:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.5)  # give the other six every chance to arrive (they must not)
            assert open_calls_metric(daemon, "tenant") == 4
            assert Counter(map(outcome, calls)) == {"open": 10}
            with Client(daemon.address, api_key=keys["mallory"], retry=NO_RETRY) as mallory:
                assert mallory.execute("python", "print(4)").stdout == b"4\n"
    finally:
        stopped(daemon)
