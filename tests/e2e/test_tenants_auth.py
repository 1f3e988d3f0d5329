"""Tenants through the daemon: the tenant comes from the key, its runtimes, ceilings,
defaults and concurrency quota apply, and one tenant's key cannot use another's settings."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sandboxd_client import (
    NO_RETRY,
    Client,
    Limits,
    PermissionDenied,
    QuotaExceeded,
    Unauthenticated,
    Verdict,
)
from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_client.proto import sandbox_pb2_grpc as pb_grpc

from .conftest import TenantDaemon

SLEEP_5S = "import time; time.sleep(5); print('woke')"


def test_no_key_is_unauthenticated(tenant_daemon: TenantDaemon) -> None:
    with tenant_daemon.client(None) as c, pytest.raises(Unauthenticated) as info:
        c.execute("python", "print(1)")
    assert "authorization: Bearer" in info.value.message


def test_wrong_key_is_unauthenticated(tenant_daemon: TenantDaemon) -> None:
    with (
        Client(tenant_daemon.daemon.address, api_key="sbx_not-a-key") as c,
        pytest.raises(Unauthenticated) as info,
    ):
        c.execute("python", "print(1)")
    assert info.value.message == "unknown API key"


def test_malformed_authorization_is_unauthenticated(tenant_daemon: TenantDaemon) -> None:
    with grpc.insecure_channel(tenant_daemon.daemon.address) as channel:
        stub = pb_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            stub.Execute(
                pb.ExecuteRequest(runtime=pb.RUNTIME_PYTHON, code="print(1)"),
                metadata=[("authorization", tenant_daemon.keys["beta"])],  # no "Bearer "
                timeout=30,
            )
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_each_key_is_its_tenant(tenant_daemon: TenantDaemon) -> None:
    with tenant_daemon.client("alpha") as a, tenant_daemon.client("beta") as b:
        assert a.execute("python", "print('a')").verdict is Verdict.OK
        assert b.execute("javascript", "console.log('b')").stdout == b"b\n"


def test_runtime_not_allowed_is_permission_denied(tenant_daemon: TenantDaemon) -> None:
    """alpha may run Python only; beta's JavaScript permission is not alpha's."""
    with tenant_daemon.client("alpha") as c, pytest.raises(PermissionDenied) as info:
        c.execute("javascript", "console.log(1)")
    assert "alpha" in info.value.message and "javascript" in info.value.message


def test_ceiling_clamps_a_larger_limit(tenant_daemon: TenantDaemon) -> None:
    """alpha's wall-time ceiling is 3000 ms: asking for 60 s gets 3 s, not an error."""
    with tenant_daemon.client("alpha") as c:
        r = c.execute("python", SLEEP_5S, limits=Limits(wall_time_ms=60_000))
    assert r.verdict is Verdict.TIMEOUT, r
    assert 2_900_000 <= r.usage.wall_time_us < 4_500_000, r.usage
    assert b"woke" not in r.stdout


def test_tenant_default_applies_when_unset(tenant_daemon: TenantDaemon) -> None:
    """alpha's default wall time is 2000 ms; beta has the built-in 10 s and finishes."""
    with tenant_daemon.client("alpha") as a:
        r = a.execute("python", SLEEP_5S)
    assert r.verdict is Verdict.TIMEOUT
    assert 1_900_000 <= r.usage.wall_time_us < 2_900_000, r.usage
    with tenant_daemon.client("beta") as b:
        r = b.execute("python", "import time; time.sleep(2.5); print('woke')")
    assert r.verdict is Verdict.OK and r.stdout == b"woke\n"


def test_concurrency_quota_is_resource_exhausted_with_retry_info(
    tenant_daemon: TenantDaemon,
) -> None:
    """alpha may run one execution at once; a second one is rejected at once with
    QuotaFailure and RetryInfo, and beta is not affected."""
    first: list[object] = []
    with Client(tenant_daemon.daemon.address, api_key=tenant_daemon.keys["alpha"]) as c1:
        started = threading.Event()

        def long_run() -> None:
            for event in c1.stream(
                "python", "import time; print('go', flush=True); time.sleep(1.5)"
            ):
                started.set()
                first.append(event)

        t = threading.Thread(target=long_run)
        t.start()
        try:
            assert started.wait(30)
            with (
                Client(
                    tenant_daemon.daemon.address,
                    api_key=tenant_daemon.keys["alpha"],
                    retry=NO_RETRY,
                ) as c2,
                pytest.raises(QuotaExceeded) as info,
            ):
                c2.execute("python", "print(1)")
            assert info.value.retry_after_s is not None and info.value.retry_after_s > 0
            assert [v.subject for v in info.value.violations] == [
                "tenant:alpha:concurrent_executions"
            ]
            # The same, decoded with the standard googleapis types.
            with grpc.insecure_channel(tenant_daemon.daemon.address) as channel:
                stub = pb_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]
                with pytest.raises(grpc.RpcError) as raw:
                    stub.Execute(
                        pb.ExecuteRequest(runtime=pb.RUNTIME_PYTHON, code="print(1)"),
                        metadata=[("authorization", f"Bearer {tenant_daemon.keys['alpha']}")],
                        timeout=30,
                    )
            assert raw.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            status = rpc_status.from_call(raw.value)  # type: ignore[arg-type]
            assert status is not None
            kinds = set()
            for detail in status.details:
                retry = error_details_pb2.RetryInfo()
                quota = error_details_pb2.QuotaFailure()
                if detail.Unpack(retry):
                    kinds.add("retry")
                    assert retry.retry_delay.ToMilliseconds() >= 1
                elif detail.Unpack(quota):
                    kinds.add("quota")
            assert kinds == {"retry", "quota"}
            with tenant_daemon.client("beta") as b:
                assert b.execute("python", "print('beta runs')").verdict is Verdict.OK
        finally:
            t.join(30)
    final = first[-1]
    assert getattr(final, "verdict", None) is Verdict.OK
    # The slot is free again.
    deadline = time.monotonic() + 5
    with tenant_daemon.client("alpha") as c:
        while True:
            try:
                assert c.execute("python", "print(2)").verdict is Verdict.OK
                break
            except QuotaExceeded:
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_body_cannot_choose_the_tenant(tenant_daemon: TenantDaemon) -> None:
    """Labels are opaque: a label claiming another tenant changes nothing."""
    with tenant_daemon.client("alpha") as c, pytest.raises(PermissionDenied):
        c.execute("javascript", "console.log(1)", labels={"tenant": "beta"})
