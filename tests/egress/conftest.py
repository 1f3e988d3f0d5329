"""Fixtures for the engine's egress tests: local sites standing in for SaaS APIs, and a pool
whose proxy resolves their names from a hosts map and trusts their CA.

    api.example.test      HTTPS (the site CA), no headers: its TLS passes through the proxy
    keyed.example.test    HTTPS (the site CA), the tenant's credential is added by the proxy;
                          /ingest answers 401 without it
    plain.example.test    plain HTTP
    metadata.example.test resolves to 169.254.169.254 (the cloud metadata address)
    mixed.example.test    resolves to 169.254.169.254 and 127.0.0.1
All but metadata resolve to 127.0.0.1, so the policies open 127.0.0.0/8 (egress_private_ranges)
where a test wants them reached.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandboxd_pool import ExecutionRequest, Limits, Outcome, Pool, PoolConfig, Runtime
from sandboxd_pool.egress import EgressHeader, EgressPolicy

from .servers import ApiServer, SiteCA, temp_dir

SECRET = f"Bearer sk-test-{secrets.token_hex(16)}"
LIMITS = Limits(wall_time_ms=20_000)


@dataclass
class Sites:
    ca: SiteCA
    api: ApiServer
    keyed: ApiServer
    plain: ApiServer
    hosts_file: Path

    def policy(
        self,
        *rules: str,
        private: tuple[str, ...] = ("127.0.0.0/8",),
        headers: bool = True,
    ) -> EgressPolicy:
        """The three sites (or `rules`), loopback opened, the credential bound to keyed."""
        return EgressPolicy.parse(
            rules
            or (
                f"api.example.test:{self.api.port}",
                f"keyed.example.test:{self.keyed.port}",
                f"plain.example.test:{self.plain.port}",
            ),
            private,
            [EgressHeader("keyed.example.test", "Authorization", SECRET)] if headers else [],
        )


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    with temp_dir() as tmp:
        directory = Path(tmp)
        ca = SiteCA(directory)
        api = ApiServer(tls=ca.server_context(["api.example.test"]))
        keyed = ApiServer(tls=ca.server_context(["keyed.example.test"]), credential=SECRET)
        plain = ApiServer()
        hosts = directory / "hosts"
        hosts.write_text(
            "# the egress tests' own names\n"
            "127.0.0.1 api.example.test keyed.example.test plain.example.test\n"
            "169.254.169.254 metadata.example.test mixed.example.test\n"
            "127.0.0.1 mixed.example.test\n"
        )
        try:
            yield Sites(ca, api, keyed, plain, hosts)
        finally:
            for server in (api, keyed, plain):
                server.close()


@pytest.fixture(scope="module")
def egress_pool(sites: Sites) -> Iterator[Pool]:
    config = PoolConfig(
        warm_workers_per_runtime=1,
        max_concurrent_executions=4,
        egress_hosts_file=str(sites.hosts_file),
        egress_ca_file=str(sites.ca.pem_path),
    )
    with Pool(config) as pool:
        assert pool.wait_until_ready(60), pool.health()
        yield pool


def run(
    pool: Pool,
    runtime: Runtime,
    code: str,
    policy: EgressPolicy | None,
    *,
    files: dict[str, bytes] | None = None,
    args: tuple[str, ...] = (),
    limits: Limits = LIMITS,
) -> Outcome:
    return pool.execute(
        ExecutionRequest(runtime=runtime, code=code, files=files or {}, args=args, limits=limits),
        egress=policy,
    )
