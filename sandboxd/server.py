"""`sandboxd serve`: the engine, the gRPC server, health, reflection, metrics, drain.

Order matters: the pool (and its zygote) starts before any gRPC thread exists (docs/architecture.md).
SIGTERM or SIGINT starts the drain: health turns NOT_SERVING, new calls get UNAVAILABLE,
in-flight executions get `drain_grace_s` to finish (then their workers are killed), async
jobs not started yet are CANCELLED (running ones share the grace), the pool is closed, and
the process exits leaving no worker, cgroup or mount behind."""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sandboxd_pool import Pool, PoolConfig, Runtime

from . import environments
from .api import reflection
from .api.call_guard import CallGuard, GuardLimits
from .api.service import SERVICE, add_sandbox_service, count_errors
from .api.servicer import SandboxServicer
from .jobs.contract import JobBackend, RunJob, TenantJobLimits
from .jobs.embedded import EmbeddedJobs
from .jobs.store import StoreLimits
from .metrics import Metrics
from .quotas.local import LocalQuotas
from .quotas.protocol import Quotas
from .settings import Settings, SettingsError
from .tenants.auth import Authenticator
from .tenants.reload import TenantsFile

log = logging.getLogger("sandboxd.server")

ENVELOPE_BYTES = 1024 * 1024  # gRPC framing and the response's other fields, above the payload
HEALTH_POLL_S = 0.25


def health_service_name(runtime: Runtime, environment: str = "") -> str:
    """A runtime's health service name ("sandboxd.v1.Sandbox/python"), or an environment's
    ("sandboxd.v1.Sandbox/python/data"). The node's ("") follows the bare runtimes only: an
    environment whose workers do not boot (its preload list fails) shows under its own name,
    and its requests get UNAVAILABLE, but the node keeps serving everything else."""
    name = f"{SERVICE}/{runtime.value}"
    return f"{name}/{environment}" if environment else name


@dataclass
class Running:
    """A started daemon. `stop()` drains it; `wait()` blocks until a signal asked to stop."""

    settings: Settings
    server: grpc.Server
    pool: Pool
    servicer: SandboxServicer
    health: health.HealthServicer
    metrics: Metrics
    address: str  # what the server is bound to, with the real port
    metrics_port: int | None
    _metrics_server: Any
    _stop_requested: threading.Event
    _stopped: threading.Event
    _poller: threading.Thread
    _closers: list[Callable[[], None]] = field(default_factory=list)  # after the pool, in order
    tenants_file: TenantsFile | None = None  # None: zero-config
    auth: Authenticator | None = None

    def reload_tenants(self) -> bool:
        """SIGHUP: read the tenants file again (tenants/reload.py); False if it did not load
        (the tenants loaded before stay) or there is no file."""
        if self.tenants_file is None:
            log.warning("SIGHUP ignored: zero-config, there is no tenants file to reload")
            return False
        assert self.auth is not None
        return self.tenants_file.reload(self.auth)

    def request_stop(self) -> None:
        self._stop_requested.set()

    def wait(self) -> None:
        self._stop_requested.wait()

    def stop(self, grace_s: float | None = None) -> None:
        if self._stopped.is_set():
            return
        grace = self.settings.drain_grace_s if grace_s is None else grace_s
        log.info("draining", extra={"fields": {"grace_s": grace}})
        self._stopped.set()
        self._stop_requested.set()
        self.servicer.start_draining()
        self.health.enter_graceful_shutdown()
        deadline = time.monotonic() + grace
        self.server.stop(grace).wait()
        if self.servicer.jobs is not None:  # async jobs still running share the grace
            self.servicer.jobs.close(grace_s=max(0.0, deadline - time.monotonic()))
        self._poller.join(timeout=5)
        self.pool.close(grace_s=grace)
        for close in self._closers:
            close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        if self.settings.is_unix_socket:
            _remove_socket(self.settings.listen[len("unix:") :])
        log.info("stopped")


def start(settings: Settings) -> Running:
    """Start the daemon (pool first, then gRPC); raises on a bad tenants file or bind, or
    environments that are not built (environments.NotBuilt), before anything is logged."""
    config = pool_config(settings)
    tenants_file = None
    if settings.tenants_file is not None:
        tenants_file = TenantsFile(settings.tenants_file)
    else:
        log.warning(
            "no tenants file: serving one keyless tenant 'default' on loopback only; "
            "create a tenants file with `sandboxd tenants add NAME --file tenants.toml`",
            extra={"fields": {"tenant": "default"}},
        )
    pool = Pool(config)
    if pool.cgroup_warning:
        log.warning(pool.cgroup_warning)
    try:
        auth = Authenticator(tenants_file.directory if tenants_file is not None else None)
        running = _start_grpc(settings, pool, auth)
        running.tenants_file, running.auth = tenants_file, auth
        return running
    except BaseException:
        pool.close(grace_s=0)
        raise


def pool_config(settings: Settings) -> PoolConfig:
    """The engine's configuration from the daemon's settings."""
    runtimes = tuple(Runtime(r) for r in settings.runtimes)
    config_args: dict[str, Any] = {
        "warm_workers_per_runtime": settings.warm_workers_per_runtime,
        "max_concurrent_executions": settings.max_concurrent_executions,
        "runtimes": runtimes,
        "jail_mode": settings.jail_mode,
        "cgroup_parent": settings.cgroup_parent,
        "max_stdin_bytes": settings.max_message_bytes,
        "max_files_bytes": settings.max_message_bytes,
        "max_code_bytes": min(settings.max_message_bytes, 16 * 1024 * 1024),
    }
    if settings.python_path:
        config_args["python_path"] = settings.python_path
    if settings.node_path:
        config_args["node_path"] = settings.node_path
    # Egress is always served (a reloaded tenants file may give a tenant rules): every worker
    # has the proxy's socket; a tenant without rules gets it closed (docs/egress.md).
    if settings.egress_hosts_file:
        config_args["egress_hosts_file"] = settings.egress_hosts_file
    if settings.egress_ca_bundle_file:
        config_args["egress_ca_file"] = settings.egress_ca_bundle_file
    if settings.environments_file is not None:
        config_args["environments"] = environments.configured(
            settings.environments_file,
            settings.environments_store,
            environments.Toolchain.of(settings.python_path, settings.node_path),
        )
    config_args["template_max_forks"] = settings.template_max_forks
    config_args["template_max_age_s"] = settings.template_max_age_s
    return PoolConfig(**config_args)


def _start_grpc(settings: Settings, pool: Pool, auth: Authenticator) -> Running:
    metrics = Metrics(tenant_labels=settings.metrics_tenant_labels)
    on_error = count_errors(metrics)  # refusals of the call guard and of the service
    local_quotas = LocalQuotas()
    long_polls = max(16, 4 * settings.max_concurrent_executions)  # GetExecutions waiting
    closers: list[Callable[[], None]] = []
    quotas: Quotas
    jobs: Callable[[RunJob], JobBackend]
    if settings.redis_url is None:
        store_limits = StoreLimits(
            retention_s=settings.result_retention_s,
            max_queued_jobs=settings.max_queued_jobs,
            max_bytes=settings.async_max_bytes,
        )
        quotas = local_quotas

        def jobs(run: RunJob) -> JobBackend:
            return EmbeddedJobs(
                run,
                local_quotas.concurrency,
                store_limits,
                max_running=settings.max_concurrent_executions,
                max_waiters=long_polls,
            )
    else:
        quotas, jobs = _cluster(settings, local_quotas, long_polls, closers)
    servicer = SandboxServicer(
        pool,
        auth,
        quotas,
        metrics,
        jobs=jobs,
        tenant_jobs=TenantJobLimits(
            max_queued_jobs=settings.max_queued_jobs_per_tenant,
            max_async_bytes=settings.async_max_bytes_per_tenant,
        ),
        environments=[e.name for e in pool.config.environments],
    )
    assert servicer.jobs is not None
    metrics.async_queued.set_function(servicer.jobs.queued)
    # Executions hold a thread each, long-polls theirs while they wait, health and reflection
    # calls theirs for at most --public-call-max-s; one tenant holds at most its open calls.
    threads = 2 * settings.max_concurrent_executions + long_polls + settings.max_public_calls + 8
    guard = CallGuard(
        auth,
        GuardLimits(
            max_calls_per_tenant=settings.max_calls_per_tenant,
            max_public_calls=settings.max_public_calls,
            public_call_max_s=settings.public_call_max_s,
            idle_timeout_s=settings.idle_timeout_s,
        ),
        SERVICE,
        on_error,
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sandboxd-rpc"),
        interceptors=[guard],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes + ENVELOPE_BYTES),
            # stdout, stderr and result are each capped by the engine; the response carries
            # all three, so the send side is not capped a second time.
            ("grpc.max_send_message_length", -1),
            ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
            ("grpc.so_reuseport", 0),
        ],
    )
    metrics.open_calls.labels("tenant").set_function(guard.tenant_calls)
    metrics.open_calls.labels("public").set_function(guard.public_calls)
    guard.watchdog.start()
    closers.append(guard.watchdog.close)
    add_sandbox_service(server, servicer, auth, on_error)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable((SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server)
    address = _bind(server, settings)
    metrics_server = None
    metrics_port = None
    if settings.metrics_port is not None:
        try:
            metrics_server, metrics_port = metrics.serve(
                settings.metrics_host, settings.metrics_port
            )
        except OSError as e:
            server.stop(0)
            raise SettingsError(
                [
                    f"{settings.name_of('metrics_port')}: cannot serve metrics on "
                    f"{settings.metrics_host}:{settings.metrics_port}: {e.strerror or e}"
                ]
            ) from None
    stop_requested = threading.Event()
    stopped = threading.Event()
    poller = threading.Thread(
        target=_follow_pool_health,
        args=(pool, health_servicer, metrics, stopped),
        name="sandboxd-health",
        daemon=True,
    )
    _follow_once(pool, health_servicer, metrics)
    poller.start()
    server.start()
    log.info(
        "listening",
        extra={
            "fields": {
                "address": address,
                "metrics_port": metrics_port,
                "tls": settings.tls_cert_file is not None,
                "zero_config": auth.zero_config,
                "runtimes": list(settings.runtimes),
            }
        },
    )
    return Running(
        settings=settings,
        server=server,
        pool=pool,
        servicer=servicer,
        health=health_servicer,
        metrics=metrics,
        address=address,
        metrics_port=metrics_port,
        _metrics_server=metrics_server,
        _stop_requested=stop_requested,
        _stopped=stopped,
        _poller=poller,
        _closers=closers,
    )


def _cluster(
    settings: Settings,
    local_quotas: LocalQuotas,
    long_polls: int,
    closers: list[Callable[[], None]],
) -> tuple[Quotas, Callable[[RunJob], JobBackend]]:
    """Quotas and async jobs in Redis (imported here: a node without --redis-url does not
    need the redis package)."""
    from .cluster.jobs import RedisJobs, RedisJobsConfig, node_name
    from .cluster.link import RedisLink
    from .cluster.quotas import RedisQuotas

    assert settings.redis_url is not None
    link = RedisLink(settings.redis_url, password=settings.redis_password)
    if not link.ping():
        log.warning(
            "starting without Redis: synchronous executions use node-local quotas, async "
            "executions are UNAVAILABLE until it is reachable",
            extra={"fields": {"redis": link.where}},
        )
    quotas = RedisQuotas(link, local_quotas, lease_s=settings.redis_lease_s)
    config = RedisJobsConfig(
        node=node_name(),
        max_running=settings.max_concurrent_executions,
        max_waiters=long_polls,
        retention_s=settings.result_retention_s,
        max_unfinished_jobs=settings.max_queued_jobs,
        visibility_s=settings.redis_visibility_timeout_s,
    )
    closers.extend([quotas.close, link.close])
    log.info(
        "cluster mode",
        extra={
            "fields": {
                "redis": link.where,
                "node": config.node,
                "visibility_timeout_s": config.visibility_s,
                "lease_s": settings.redis_lease_s,
            }
        },
    )
    return quotas, lambda run: RedisJobs(run, link, quotas, config)


def _bind(server: grpc.Server, settings: Settings) -> str:
    listen = settings.listen
    if settings.is_unix_socket:
        _remove_socket(listen[len("unix:") :])
    credentials = None
    if settings.tls_cert_file and settings.tls_key_file:
        with open(settings.tls_key_file, "rb") as f:
            key = f.read()
        with open(settings.tls_cert_file, "rb") as f:
            cert = f.read()
        credentials = grpc.ssl_server_credentials([(key, cert)])
    try:
        if credentials is not None:
            port = server.add_secure_port(listen, credentials)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:  # grpc >= 1.60 raises where older ones returned 0
        port = 0
    if not port:
        raise SettingsError(
            [
                f"{settings.name_of('listen')}: cannot listen on {listen} (the port is taken, "
                "the address is not one of this host's, or the socket cannot be made there)"
            ]
        )
    if settings.is_unix_socket:
        return listen
    host = listen.rpartition(":")[0]
    return f"{host}:{port}"


def _remove_socket(path: str) -> None:
    """A stale socket of an earlier run (never a regular file)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _follow_once(pool: Pool, servicer: health.HealthServicer, metrics: Metrics) -> None:
    snapshot = pool.health()
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    for runtime, h in snapshot.items():
        servicer.set(health_service_name(runtime), serving if h.healthy else not_serving)
    overall = serving if all(h.healthy for h in snapshot.values()) else not_serving
    servicer.set("", overall)
    servicer.set(SERVICE, overall)
    metrics.observe_pool(snapshot)
    environments = pool.environments_health()
    for name, h in environments.items():
        servicer.set(health_service_name(h.runtime, name), serving if h.healthy else not_serving)
    metrics.observe_environments(environments)


def _follow_pool_health(
    pool: Pool, servicer: health.HealthServicer, metrics: Metrics, stopped: threading.Event
) -> None:
    """Health statuses and pool gauges follow the pool until the drain starts (which sets
    everything NOT_SERVING and keeps it so)."""
    while not stopped.wait(HEALTH_POLL_S):
        try:
            _follow_once(pool, servicer, metrics)
        except Exception:
            log.exception("health poll failed")


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT, then drain; SIGHUP reloads the tenants file. Returns the
    exit status."""
    running = start(settings)
    wake = threading.Event()
    hangup = threading.Event()

    def on_stop(*_: object) -> None:
        running.request_stop()
        wake.set()

    def on_hangup(*_: object) -> None:
        hangup.set()
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop)
    signal.signal(signal.SIGHUP, on_hangup)
    while not running._stop_requested.is_set():
        wake.wait(0.5)
        wake.clear()
        if hangup.is_set() and not running._stop_requested.is_set():
            hangup.clear()
            running.reload_tenants()  # here, not in the handler: it reads a file and logs
    running.stop()
    return 0
