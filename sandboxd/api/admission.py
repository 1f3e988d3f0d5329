"""The one path a request takes before it runs: Execute, ExecuteStream and Submit alike.

    0  not draining     else UNAVAILABLE (the node is going away; retry on another)
    1  authenticate     the tenant of the call's API key (sandboxd.tenants.auth);
                        call_guard.py has already refused a missing or unknown key
    2  authorise        the tenant may use the request's runtime, else PERMISSION_DENIED;
                        an environment this node has (else INVALID_ARGUMENT naming the
                        ones it has) that the tenant was given (else PERMISSION_DENIED)
    3  convert          the message as an engine request (convert.py): INVALID_ARGUMENT for
                        what the message itself gets wrong (mode, labels, duplicate paths,
                        egress destinations outside the tenant's rules)
    4  clamp            zero limits take the tenant's defaults, larger ones its ceilings
    5  validate         the engine's own check (`Engine.check`): INVALID_ARGUMENT naming the
                        field; the checked request then runs without a second check
    6  spend quota      executions per second and CPU seconds per minute (sandboxd.quotas),
                        else RESOURCE_EXHAUSTED with a retry delay

Each step refuses with its own status and nothing after it runs, so a request refused before
step 6 spends no quota. Execute and ExecuteStream then take one of the tenant's concurrency
slots for the run; a Submit's job takes one when it starts (sandboxd.jobs).

What a refused request costs the daemon: its body was received and decoded by gRPC (the
call guard bounds a tenant's open calls); conversion copies it once; validation reads it
once without building anything (an event is checked in 64 KiB steps, at most 1,000,000
values). SECURITY.md's resource model has the measured figures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace

from sandboxd_client.proto import sandbox_pb2 as pb
from sandboxd_pool import CheckedRequest, ExecutionRequest, InvalidRequest

from ..errors import PermissionDenied, Unavailable
from ..quotas.protocol import Quotas
from ..tenants.auth import Authenticator
from ..tenants.model import Tenant
from . import convert

Check = Callable[[ExecutionRequest], CheckedRequest]
Metadata = Iterable[tuple[str, str | bytes]] | None


@dataclass(frozen=True)
class Admitted:
    """A request that passed every step: its tenant (whose quota it spent), the checked
    engine request and its labels."""

    tenant: Tenant
    request: CheckedRequest
    labels: dict[str, str]
    egress: tuple[str, ...] = ()  # the destinations the request narrowed egress to (convert)


class Admission:
    def __init__(
        self,
        auth: Authenticator,
        quotas: Quotas,
        check: Check,
        draining: threading.Event,
        environments: Collection[str] = (),
    ) -> None:
        """environments: the names of the node's environments (PoolConfig.environments)."""
        self._environments = frozenset(environments)
        self._auth = auth
        self._quotas = quotas
        self._check = check
        self._draining = draining

    def admit(self, msg: pb.ExecuteRequest, metadata: Metadata, *, submit: bool) -> Admitted:
        """Steps 0-6 above for an Execute, ExecuteStream (`submit` False) or Submit."""
        if self._draining.is_set():
            raise Unavailable("the node is draining (shutting down); retry on another node")
        tenant = self._auth.tenant(metadata)
        runtime = convert.runtime_of(msg)
        if runtime not in tenant.runtimes:
            raise PermissionDenied(
                f"tenant {tenant.name!r} may not use runtime {runtime.value} "
                f"(allowed: {', '.join(sorted(r.value for r in tenant.runtimes)) or 'none'})"
            )
        if msg.environment:
            self._authorise_environment(tenant, msg.environment)
        request = convert.execution_request(msg, tenant.name, submit=submit)
        egress = convert.requested_egress(msg, tenant)
        request = replace(request, limits=tenant.effective_limits(request.limits))
        checked = self._check(request)
        self._quotas.admit(tenant)
        return Admitted(tenant, checked, dict(msg.labels), egress)

    def _authorise_environment(self, tenant: Tenant, name: str) -> None:
        if name not in self._environments:
            known = ", ".join(sorted(self._environments)) or "none"
            shown = name if len(name) <= 64 else name[:61] + "..."
            raise InvalidRequest(
                "environment", f"unknown environment {shown!r} (there are: {known})"
            )
        if not tenant.may_use_environment(name):
            given = ", ".join(sorted(tenant.environments or ())) or "none"
            raise PermissionDenied(
                f"tenant {tenant.name!r} may not use environment {name!r} (allowed: {given})"
            )
