"""Who is calling: the tenant comes from the API key in the call's metadata
(`authorization: Bearer <key>`), never from the request body."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import Unauthenticated
from .model import Tenant, TenantDirectory, default_tenant

HEADER = "authorization"
SCHEME = "bearer "


def api_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The key of the one `authorization` entry, None without one. More than one entry is
    refused rather than picking one: a proxy in front that checked the last while the daemon
    used the first would let a caller choose its tenant."""
    values = [value for key, value in metadata or () if key == HEADER]
    if not values:
        return None
    if len(values) > 1:
        raise Unauthenticated("more than one authorization metadata entry; send exactly one")
    value = values[0]
    if isinstance(value, str) and value[: len(SCHEME)].lower() == SCHEME:
        return value[len(SCHEME) :].strip()
    raise Unauthenticated("the authorization metadata must be 'Bearer <api-key>'")


class Authenticator:
    """With a tenants file, every call must carry a known key. Without one (zero-config) every
    call is the keyless tenant `default`; the server then listens on loopback only."""

    def __init__(self, directory: TenantDirectory | None) -> None:
        self._directory = directory
        self._default = default_tenant() if directory is None else None

    @property
    def zero_config(self) -> bool:
        return self._directory is None

    def use(self, directory: TenantDirectory) -> None:
        """Authenticate later calls against `directory` (a reloaded tenants file). A
        zero-config daemon has no file to reload and stays keyless."""
        if self._directory is None:
            raise ValueError("a zero-config daemon has no tenants file to reload")
        self._directory = directory  # one reference swap: a call sees the old or the new

    def by_name(self, name: str) -> Tenant | None:
        """The tenant called `name` as the tenants file has it now (None once removed): an
        async job's egress follows the rules in force when it runs."""
        if self._default is not None:
            return self._default if name == self._default.name else None
        assert self._directory is not None
        return self._directory.get(name)

    def tenant(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Tenant:
        key = api_key(metadata)
        if self._default is not None:
            return self._default
        assert self._directory is not None
        if key is None:
            raise Unauthenticated(
                "missing API key: send metadata 'authorization: Bearer <api-key>'"
            )
        tenant = self._directory.authenticate(key)
        if tenant is None:
            raise Unauthenticated("unknown API key")
        return tenant
