"""The one admission path (sandboxd/api/admission.py) with real parts: a tenants directory, the
Authenticator, node-local quotas and the engine's own check. Each step refuses with its
status, in order, and a request refused by any step before the quota spends none of it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sandboxd.api.admission import Admission
from sandboxd.errors import PermissionDenied, QuotaExceeded, Unauthenticated, Unavailable
from sandboxd.quotas.local import LocalQuotas
from sandboxd.tenants import TenantDirectory, add_tenant, load_tenants
from sandboxd.tenants.auth import Authenticator
from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_pool import CEILING_LIMITS, InvalidRequest, PoolConfig, Runtime
from sandboxd_pool.validation import check

CONFIG = PoolConfig()
BAD = {"A=B": "1"}  # the engine's check refuses it: every refused request below carries it


@pytest.fixture
def tenants(tmp_path: Path) -> tuple[TenantDirectory, dict[str, str]]:
    path = tmp_path / "tenants.toml"
    keys = {
        "metered": add_tenant(
            path,
            "metered",
            runtimes=["python"],
            max_executions_per_second=0.001,  # one token, then none for 1,000 s
            default_limits={"wall_time_ms": 2000},
            ceiling_limits={"wall_time_ms": 5000},
        ),
    }
    return TenantDirectory(load_tenants(path)), keys


def metadata(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def request(**fields: object) -> pb.ExecuteRequest:
    return pb.ExecuteRequest(
        **{"runtime": pb.RUNTIME_PYTHON, "code": "print(1)", **fields}  # type: ignore[arg-type]
    )


def admission(directory: TenantDirectory, draining: threading.Event) -> Admission:
    return Admission(Authenticator(directory), LocalQuotas(), lambda r: check(r, CONFIG), draining)


def test_each_step_refuses_in_order_and_only_the_last_spends_quota(
    tenants: tuple[TenantDirectory, dict[str, str]],
) -> None:
    directory, keys = tenants
    draining = threading.Event()
    admit = admission(directory, draining)
    key = keys["metered"]
    # Each request also fails every later step: the earliest step answers.
    refused: list[tuple[Callable[[], object], type[Exception], str]] = [
        (
            lambda: admit.admit(request(env=BAD), metadata("sbx_wrong"), submit=False),
            Unauthenticated,
            "unknown API key",
        ),
        (
            lambda: admit.admit(
                request(runtime=pb.RUNTIME_JAVASCRIPT, idempotency_key="k", env=BAD),
                metadata(key),
                submit=False,
            ),
            PermissionDenied,
            "may not use runtime javascript",
        ),
        (  # convert: an idempotency key is for Submit only
            lambda: admit.admit(request(idempotency_key="k", env=BAD), metadata(key), submit=False),
            InvalidRequest,
            "idempotency_key",
        ),
        (  # validate: the engine's check
            lambda: admit.admit(request(env=BAD), metadata(key), submit=True),
            InvalidRequest,
            "env['A=B']",
        ),
    ]
    for _ in range(3):
        for call, error, text in refused:
            with pytest.raises(error) as info:
                call()
            assert text in str(info.value), (str(info.value), text)
    admitted = admit.admit(request(), metadata(key), submit=False)  # the one token is there
    assert admitted.tenant.name == "metered"
    with pytest.raises(QuotaExceeded) as quota:
        admit.admit(request(), metadata(key), submit=True)
    assert quota.value.subject == "tenant:metered:executions_per_second"
    draining.set()
    with pytest.raises(Unavailable):
        admit.admit(request(), metadata(key), submit=False)


def test_limits_take_the_tenants_defaults_and_ceilings_before_the_check(
    tenants: tuple[TenantDirectory, dict[str, str]],
) -> None:
    directory, keys = tenants
    admit = admission(directory, threading.Event())
    zero = admit.admit(request(), metadata(keys["metered"]), submit=False)
    assert zero.request.request.limits.wall_time_ms == 2000  # the tenant's default
    assert zero.request.limits.wall_time_ms == 2000
    assert (
        zero.request.request.tenant == "metered" and zero.request.request.runtime is Runtime.PYTHON
    )


def test_a_request_over_the_ceiling_is_lowered_not_refused(
    tenants: tuple[TenantDirectory, dict[str, str]],
) -> None:
    directory, keys = tenants
    admit = admission(directory, threading.Event())
    asked = pb.Limits(wall_time_ms=60_000, memory_bytes=CEILING_LIMITS.memory_bytes + 1)
    admitted = admit.admit(
        request(limits=asked, labels={"a": "b"}), metadata(keys["metered"]), submit=True
    )
    assert admitted.request.limits.wall_time_ms == 5000  # the tenant's ceiling
    assert admitted.request.limits.memory_bytes == CEILING_LIMITS.memory_bytes
    assert admitted.labels == {"a": "b"}
