"""The hostile suite's pollution cases, through gRPC: what one call pollutes, the next call
(same tenant or another) never sees — whichever warm worker serves it."""

from __future__ import annotations

import json

import pytest
from pollution_programs import CHECK, CLEAN_ENV, EXPECTED, HELPER, JS, POLLUTE, PY

from sandboxd_client import Client, Verdict
from sandboxd_pool import Runtime

from .conftest import TenantDaemon


def pollute(c: Client, runtime: Runtime) -> None:
    r = c.execute(runtime.value, POLLUTE[runtime], env={"A_ENV": "1"})
    assert r.verdict is Verdict.OK, r
    assert r.stdout == b"A-ran\n", r


def check(c: Client, runtime: Runtime) -> None:
    r = c.execute(runtime.value, CHECK[runtime], env=CLEAN_ENV, files=HELPER[runtime])
    assert r.verdict is Verdict.OK, r
    assert json.loads(r.stdout) == EXPECTED[runtime]


@pytest.mark.parametrize("victim", [PY, JS], ids=["python-victim", "javascript-victim"])
def test_pollution_does_not_carry_over_through_grpc(client: Client, victim: Runtime) -> None:
    # More rounds than the daemon has warm workers (2 per runtime), both polluters.
    for _ in range(3):
        for polluter in (PY, JS):
            pollute(client, polluter)
            check(client, victim)


def test_pollution_does_not_cross_tenants(tenant_daemon: TenantDaemon) -> None:
    with tenant_daemon.client("beta") as beta, tenant_daemon.client("alpha") as alpha:
        for _ in range(3):
            pollute(beta, PY)
            pollute(beta, JS)
            check(alpha, PY)
            check(beta, JS)
