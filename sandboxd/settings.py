"""`sandboxd serve` settings: flags, each with a SANDBOXD_* environment variable, validated at
startup with one clear message per bad value. A flag wins over its environment variable."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sandboxd_pool.jail.cgroups import PARENT_NAME_PATTERN
from sandboxd_pool.jail.mode import MAX_SLOTS

MIB = 1024 * 1024
DEFAULT_LISTEN = "127.0.0.1:50051"


class SettingsError(ValueError):
    """One or more bad settings; the message has one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Settings:
    listen: str = DEFAULT_LISTEN  # HOST:PORT (port 0 picks a free port) or unix:PATH
    tenants_file: str | None = None  # None: zero-config, one keyless tenant, loopback only
    metrics_port: int | None = None  # None: no metrics endpoint; 0 picks a free port
    metrics_host: str = "127.0.0.1"
    metrics_tenant_labels: bool = False  # a `tenant` label on execution counters (cardinality)
    warm_workers_per_runtime: int = 4
    max_concurrent_executions: int = 16  # on this node, all tenants together
    max_message_bytes: int = 64 * MIB  # largest request or response payload
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    drain_grace_s: float = 30.0  # on SIGTERM: how long in-flight executions may finish
    runtimes: tuple[str, ...] = ("python", "javascript")
    python_path: str | None = None  # interpreter for Python workers (default: the daemon's)
    node_path: str | None = None  # default: `node` on PATH
    jail_mode: str = "auto"  # auto|root|subuid (README "The two jail modes")
    cgroup_parent: str = "sandboxd"  # cgroup holding this daemon's worker cgroups
    log_level: str = "INFO"
    # Async executions (Submit), embedded backend: all in this process's memory.
    result_retention_s: float = 3600.0  # a finished execution's result is kept this long
    max_queued_jobs: int = 1000  # async executions waiting to start on this node
    async_max_bytes: int = 1024 * MIB  # memory for queued requests and kept results
    max_queued_jobs_per_tenant: int = 100  # a tenant's async executions not finished yet
    async_max_bytes_per_tenant: int = 256 * MIB  # a tenant's share of the async memory
    # The edge (api/call_guard.py): what callers can hold before and while they are served.
    max_calls_per_tenant: int = 32  # a tenant's calls open at once on this node
    max_public_calls: int = 16  # health and reflection calls (no key) open at once
    public_call_max_s: float = 10.0  # a health or reflection call lasts at most this long
    idle_timeout_s: float = 30.0  # no request message / no response taken: the call ends
    max_streams_per_connection: int = 100  # HTTP/2 concurrent streams of one connection
    # Cluster (cluster/jobs.py, cluster/quotas.py): None keeps everything on this node.
    redis_url: str | None = None  # redis://[:password@]host:port/db, rediss://..., unix://...
    # The Redis password kept out of the URL (and the process list): read from
    # --redis-password-file, or SANDBOXD_REDIS_PASSWORD (environment only).
    redis_password_file: str | None = None
    redis_password: str | None = dataclasses.field(default=None, repr=False)
    redis_visibility_timeout_s: float = 30.0  # a job its node stopped renewing is taken over
    redis_lease_s: float = 30.0  # a dead node's concurrency slots are free again after this
    # Egress (README "Egress"): names the proxy resolves before DNS, and CA certificates it
    # trusts for the destinations' TLS beside the system store. None: neither.
    egress_hosts_file: str | None = None
    egress_ca_bundle_file: str | None = None
    # field -> the flag or environment variable it came from, for messages after startup
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def name_of(self, field_name: str) -> str:
        """How the operator set `field_name` (`--listen` or `SANDBOXD_LISTEN`), for messages
        about a value that only fails once used (a port already taken)."""
        if field_name in self.sources:
            return self.sources[field_name]
        return next(flag for flag, _env, name, _help in _FLAGS if name == field_name)

    @property
    def is_unix_socket(self) -> bool:
        return self.listen.startswith("unix:")

    @property
    def listen_host(self) -> str:
        host, _, _ = self.listen.rpartition(":")
        return host.strip("[]")

    @property
    def listens_on_loopback_only(self) -> bool:
        if self.is_unix_socket:
            return True
        host = self.listen_host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


# (flag, env var, Settings field, help)
_FLAGS: tuple[tuple[str, str, str, str], ...] = (
    (
        "--listen",
        "SANDBOXD_LISTEN",
        "listen",
        f"HOST:PORT or unix:PATH to serve gRPC on (default {DEFAULT_LISTEN}; port 0 picks a free port)",
    ),
    (
        "--tenants",
        "SANDBOXD_TENANTS",
        "tenants_file",
        "tenants file (TOML, see `sandboxd tenants add`); without one a single keyless tenant "
        "'default' is served on loopback only",
    ),
    (
        "--metrics-port",
        "SANDBOXD_METRICS_PORT",
        "metrics_port",
        "serve Prometheus metrics on this HTTP port (0 picks a free port; default: off)",
    ),
    (
        "--metrics-host",
        "SANDBOXD_METRICS_HOST",
        "metrics_host",
        "address of the metrics endpoint (default 127.0.0.1)",
    ),
    (
        "--warm-workers",
        "SANDBOXD_WARM_WORKERS",
        "warm_workers_per_runtime",
        "ready workers kept per runtime (default 4)",
    ),
    (
        "--max-concurrent",
        "SANDBOXD_MAX_CONCURRENT",
        "max_concurrent_executions",
        "executions running at once on this node; more wait for a slot (default 16)",
    ),
    (
        "--max-message-bytes",
        "SANDBOXD_MAX_MESSAGE_BYTES",
        "max_message_bytes",
        "largest request and response payload, bytes (default 67108864 = 64 MiB)",
    ),
    ("--tls-cert", "SANDBOXD_TLS_CERT", "tls_cert_file", "PEM certificate chain (enables TLS)"),
    ("--tls-key", "SANDBOXD_TLS_KEY", "tls_key_file", "PEM private key for --tls-cert"),
    (
        "--drain-grace",
        "SANDBOXD_DRAIN_GRACE_S",
        "drain_grace_s",
        "seconds in-flight executions may take to finish after SIGTERM (default 30)",
    ),
    (
        "--runtimes",
        "SANDBOXD_RUNTIMES",
        "runtimes",
        "comma-separated runtimes to serve (default python,javascript)",
    ),
    (
        "--python",
        "SANDBOXD_PYTHON",
        "python_path",
        "Python interpreter for workers (default: the daemon's own)",
    ),
    ("--node", "SANDBOXD_NODE", "node_path", "Node.js binary for workers (default: node on PATH)"),
    (
        "--jail-mode",
        "SANDBOXD_JAIL_MODE",
        "jail_mode",
        "auto, root or subuid: how workers are jailed (default auto: root mode as host root, "
        "else subuid mode; README 'The two jail modes')",
    ),
    (
        "--cgroup-parent",
        "SANDBOXD_CGROUP_PARENT",
        "cgroup_parent",
        "name of the cgroup (made in each hierarchy) holding this daemon's worker cgroups; "
        "daemons sharing it share its limits (default sandboxd)",
    ),
    (
        "--result-retention-s",
        "SANDBOXD_RESULT_RETENTION_S",
        "result_retention_s",
        "seconds an async execution's result is kept after it finished (default 3600)",
    ),
    (
        "--max-queued-jobs",
        "SANDBOXD_MAX_QUEUED_JOBS",
        "max_queued_jobs",
        "async executions waiting to start on this node; more are refused (default 1000)",
    ),
    (
        "--async-max-bytes",
        "SANDBOXD_ASYNC_MAX_BYTES",
        "async_max_bytes",
        "memory for queued async requests and kept results, bytes (default 1073741824 = 1 GiB)",
    ),
    (
        "--max-queued-jobs-per-tenant",
        "SANDBOXD_MAX_QUEUED_JOBS_PER_TENANT",
        "max_queued_jobs_per_tenant",
        "a tenant's async executions accepted and not finished (on this node, or in the "
        "cluster with --redis-url); more are refused; a tenant's max_queued_jobs wins "
        "(default 100)",
    ),
    (
        "--async-max-bytes-per-tenant",
        "SANDBOXD_ASYNC_MAX_BYTES_PER_TENANT",
        "async_max_bytes_per_tenant",
        "a tenant's share of the async memory (its queued requests with room for their "
        "output, and its kept results), bytes; a tenant's max_async_bytes wins "
        "(default 268435456 = 256 MiB)",
    ),
    (
        "--max-calls-per-tenant",
        "SANDBOXD_MAX_CALLS_PER_TENANT",
        "max_calls_per_tenant",
        "calls of one tenant open at once on this node (waiting for their request, running, "
        "long-polling or sending); more are refused at once; a tenant's max_open_calls wins "
        "(default 32)",
    ),
    (
        "--max-public-calls",
        "SANDBOXD_MAX_PUBLIC_CALLS",
        "max_public_calls",
        "health and reflection calls (which need no API key) open at once; more are refused "
        "at once (default 16)",
    ),
    (
        "--public-call-max-s",
        "SANDBOXD_PUBLIC_CALL_MAX_S",
        "public_call_max_s",
        "seconds a health or reflection call (a Watch, a reflection stream) may stay open "
        "(default 10)",
    ),
    (
        "--idle-timeout-s",
        "SANDBOXD_IDLE_TIMEOUT_S",
        "idle_timeout_s",
        "seconds a call may wait for its request message, or for its client to take a "
        "response message (plus a second per MiB of it), before it is ended with "
        "DEADLINE_EXCEEDED (default 30)",
    ),
    (
        "--max-streams-per-connection",
        "SANDBOXD_MAX_STREAMS_PER_CONNECTION",
        "max_streams_per_connection",
        "calls (HTTP/2 streams) one connection may have open at once; a client waits for "
        "more (default 100)",
    ),
    (
        "--redis-url",
        "SANDBOXD_REDIS_URL",
        "redis_url",
        "Redis shared by the nodes of a cluster (redis://HOST:PORT/DB, rediss://, unix://): async "
        "executions on a Redis Stream, tenant quotas cluster-wide (default: none, this node only)",
    ),
    (
        "--redis-password-file",
        "SANDBOXD_REDIS_PASSWORD_FILE",
        "redis_password_file",
        "file holding the Redis password (one line), so that it is not in --redis-url, which "
        "the process list shows; or set SANDBOXD_REDIS_PASSWORD (default: the URL's, if any)",
    ),
    (
        "--redis-visibility-timeout-s",
        "SANDBOXD_REDIS_VISIBILITY_TIMEOUT_S",
        "redis_visibility_timeout_s",
        "seconds after which a job whose node stopped renewing it (died) is run by another "
        "node (default 30)",
    ),
    (
        "--redis-lease-s",
        "SANDBOXD_REDIS_LEASE_S",
        "redis_lease_s",
        "seconds after which the concurrency slots of a node that died are free again (default 30)",
    ),
    (
        "--egress-hosts",
        "SANDBOXD_EGRESS_HOSTS",
        "egress_hosts_file",
        "hosts file (`IP NAME...` per line) the egress proxy resolves names from before DNS; "
        "its addresses are checked like any other (default: none)",
    ),
    (
        "--egress-ca-bundle",
        "SANDBOXD_EGRESS_CA_BUNDLE",
        "egress_ca_bundle_file",
        "PEM CA certificates the egress proxy trusts for the destinations' TLS, beside the "
        "system store (default: none)",
    ),
    (
        "--log-level",
        "SANDBOXD_LOG_LEVEL",
        "log_level",
        "DEBUG, INFO, WARNING or ERROR (default INFO)",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, env, _field, help_text in _FLAGS:
        parser.add_argument(flag, default=None, help=f"{help_text} [env {env}]")
    parser.add_argument(
        "--metrics-tenant-labels",
        action="store_const",
        const="true",
        default=None,
        help="label execution counters by tenant (watch the cardinality) "
        "[env SANDBOXD_METRICS_TENANT_LABELS=true]",
    )


def _int(problems: list[str], name: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        problems.append(f"{name}: {raw!r} is not an integer")
        return lo
    if not lo <= value <= hi:
        problems.append(f"{name}: {value} is out of range [{lo}, {hi}]")
    return value


def _seconds(problems: list[str], name: str, raw: str, lo: float, hi: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name}: {raw!r} is not a number of seconds")
        return lo
    if not lo <= value <= hi:  # also rejects nan
        problems.append(f"{name}: {value:g} is out of range [{lo:g}, {hi:g}] seconds")
    return value


def _redis_url_problem(url: str) -> str | None:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return "unknown scheme"
    from .cluster.link import url_problem  # the cluster code parses it, as it will at start

    return url_problem(url)


def _tls_problem(cert_file: str, key_file: str) -> str | None:
    """Why the PEM files cannot serve TLS (not PEM, key and certificate not a pair), or None."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as e:
        return str(e)
    return None


def _egress_hosts_problem(path: str) -> str | None:
    """Why the egress hosts file cannot be used (unreadable, a bad line), or None."""
    from sandboxd_pool.egress.hosts import load_hosts_file

    try:
        load_hosts_file(path)
    except (OSError, ValueError) as e:
        return str(e)
    return None


def _ca_bundle_problem(path: str) -> str | None:
    """Why the file holds no CA certificate the proxy can load, or None."""
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        return f"not PEM CA certificates ({e.reason or e})"
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    return None


def _host_problem(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        return f"not an IP address, and it does not resolve ({e})"
    return None


REDIS_PASSWORD_ENV = "SANDBOXD_REDIS_PASSWORD"


def _password_file(problems: list[str], name: str, path: str) -> str | None:
    """The password in `path`: its first line (without the newline), which must not be empty."""
    try:
        with open(path, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{name}: cannot read {path!r}: {e}")
        return None
    if not password:
        problems.append(f"{name}: {path!r} is empty (its first line is the password)")
        return None
    return password


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags and the environment; SettingsError lists every bad value."""
    env = os.environ if env is None else env
    raw: dict[str, tuple[str, str]] = {}  # field -> (name for messages, raw value)
    for flag, var, field, _help in _FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            raw[field] = (flag, value)
        elif env.get(var):
            raw[field] = (var, env[var])
    tenant_labels = args.metrics_tenant_labels or env.get("SANDBOXD_METRICS_TENANT_LABELS", "")
    env_password = env.get(REDIS_PASSWORD_ENV)
    problems: list[str] = []
    values: dict[str, object] = {}
    for field, (name, value) in raw.items():
        if field in ("metrics_port",):
            values[field] = _int(problems, name, value, 0, 65535)
        elif field == "warm_workers_per_runtime":
            values[field] = _int(problems, name, value, 1, 256)
        elif field == "max_concurrent_executions":
            values[field] = _int(problems, name, value, 1, 4096)
        elif field == "max_message_bytes":
            values[field] = _int(problems, name, value, 4096, 1024 * MIB)
        elif field == "drain_grace_s":
            values[field] = _seconds(problems, name, value, 0, 3600)
        elif field == "result_retention_s":
            values[field] = _seconds(problems, name, value, 1, 7 * 86400)
        elif field == "max_queued_jobs":
            values[field] = _int(problems, name, value, 1, 1_000_000)
        elif field == "async_max_bytes":
            values[field] = _int(problems, name, value, 16 * MIB, 1024 * 1024 * MIB)
        elif field == "max_queued_jobs_per_tenant":
            values[field] = _int(problems, name, value, 1, 1_000_000)
        elif field == "async_max_bytes_per_tenant":
            values[field] = _int(problems, name, value, 1 * MIB, 1024 * 1024 * MIB)
        elif field == "max_calls_per_tenant":
            values[field] = _int(problems, name, value, 1, 100_000)
        elif field == "max_public_calls":
            values[field] = _int(problems, name, value, 1, 10_000)
        elif field == "max_streams_per_connection":
            values[field] = _int(problems, name, value, 1, 100_000)
        elif field in ("public_call_max_s", "idle_timeout_s"):
            values[field] = _seconds(problems, name, value, 0.1, 3600)
        elif field in ("redis_visibility_timeout_s", "redis_lease_s"):
            values[field] = _seconds(problems, name, value, 1, 3600)
        elif field == "redis_url":
            problem = _redis_url_problem(value)
            if problem is not None:
                problems.append(
                    f"{name}: {_redacted(value)!r} is not a Redis URL ({problem}; "
                    "redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///PATH)"
                )
            values[field] = value
        elif field == "redis_password_file":
            values[field] = value
            values["redis_password"] = _password_file(problems, name, value)
        elif field == "runtimes":
            names = tuple(r.strip().lower() for r in value.split(",") if r.strip())
            bad = [r for r in names if r not in ("python", "javascript")]
            if bad or not names:
                problems.append(f"{name}: {value!r}: each runtime must be 'python' or 'javascript'")
            elif len(set(names)) != len(names):
                problems.append(f"{name}: {value!r}: name each runtime once")
            values[field] = names
        elif field == "jail_mode":
            mode = value.strip().lower()
            if mode not in ("auto", "root", "subuid"):
                problems.append(f"{name}: {value!r} is not auto, root or subuid")
            values[field] = mode
        elif field == "cgroup_parent":
            if not PARENT_NAME_PATTERN.fullmatch(value):
                problems.append(
                    f"{name}: {value!r} is not one directory name (letters, digits, '_', '.', "
                    "'-'; at most 64; not starting with '.' or '-'; not 'daemon', the daemon's "
                    "own cgroup in a delegated one)"
                )
            values[field] = value
        elif field == "log_level":
            level = value.upper()
            if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                problems.append(f"{name}: {value!r} is not DEBUG, INFO, WARNING or ERROR")
            values[field] = level
        else:
            values[field] = value
    if env_password:
        if "redis_password_file" in raw:
            problems.append(
                f"{REDIS_PASSWORD_ENV} and {raw['redis_password_file'][0]} both give the Redis "
                "password; give one"
            )
        values["redis_password"] = env_password
    if tenant_labels:
        if tenant_labels.lower() not in ("true", "false", "1", "0"):
            problems.append(f"SANDBOXD_METRICS_TENANT_LABELS: {tenant_labels!r} is not true/false")
        values["metrics_tenant_labels"] = tenant_labels.lower() in ("true", "1")
    values["sources"] = {field: name for field, (name, _value) in raw.items()}
    settings = Settings(**values)  # type: ignore[arg-type]
    problems.extend(_check(settings, raw))
    if problems:
        raise SettingsError(problems)
    return settings


def _check(s: Settings, raw: Mapping[str, tuple[str, str]]) -> list[str]:
    problems: list[str] = []
    name = raw.get("listen", ("--listen", ""))[0]
    if s.is_unix_socket:
        path = s.listen[len("unix:") :]
        if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            problems.append(f"{name}: {s.listen!r}: the socket's directory does not exist")
    else:
        host, sep, port = s.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            problems.append(
                f"{name}: {s.listen!r} is not HOST:PORT (e.g. 127.0.0.1:50051, [::]:50051) "
                "or unix:PATH"
            )
        elif (problem := _host_problem(s.listen_host)) is not None:
            problems.append(f"{name}: {s.listen!r}: {problem}")
    if s.tenants_file is not None and not os.path.isfile(s.tenants_file):
        problems.append(
            f"{raw['tenants_file'][0]}: {s.tenants_file!r} does not exist "
            "(create it with `sandboxd tenants add NAME --file FILE`)"
        )
    if (s.tls_cert_file is None) != (s.tls_key_file is None):
        problems.append("--tls-cert and --tls-key must be given together")
    for field in ("tls_cert_file", "tls_key_file"):
        path = getattr(s, field)
        if path is not None and not os.path.isfile(path):
            problems.append(f"{raw[field][0]}: {path!r} does not exist")
    cert, key = s.tls_cert_file, s.tls_key_file
    if cert is not None and key is not None and os.path.isfile(cert) and os.path.isfile(key):
        problem = _tls_problem(cert, key)
        if problem is not None:
            names = f"{raw['tls_cert_file'][0]}, {raw['tls_key_file'][0]}"
            problems.append(f"{names}: cannot load the certificate and its key: {problem}")
    for field in ("python_path", "node_path"):
        path = getattr(s, field)
        if path is None:
            continue
        if not os.path.isabs(path):
            problems.append(f"{raw[field][0]}: {path!r} must be an absolute path")
        elif not os.path.isfile(path) or not os.access(path, os.X_OK):
            problems.append(f"{raw[field][0]}: {path!r} is not an executable file")
    for field, problem_of in (
        ("egress_hosts_file", _egress_hosts_problem),
        ("egress_ca_bundle_file", _ca_bundle_problem),
    ):
        path = getattr(s, field)
        if path is None:
            continue
        if not os.path.isfile(path):
            problems.append(f"{raw[field][0]}: {path!r} does not exist")
        elif (problem := problem_of(path)) is not None:
            problems.append(f"{raw[field][0]}: {path!r}: {problem}")
    if "metrics_host" in raw:
        problem = _host_problem(s.metrics_host)
        if problem is not None:
            problems.append(f"{raw['metrics_host'][0]}: {s.metrics_host!r}: {problem}")
    slots = len(s.runtimes) * s.warm_workers_per_runtime + s.max_concurrent_executions
    if slots > MAX_SLOTS:
        problems.append(
            f"{s.name_of('warm_workers_per_runtime')} x {len(s.runtimes)} runtimes + "
            f"{s.name_of('max_concurrent_executions')} = {slots} workers at once, more than the "
            f"{MAX_SLOTS} worker slots (uids) the engine has"
        )
    if s.redis_password is not None or s.redis_password_file is not None:
        where = (
            raw["redis_password_file"][0] if "redis_password_file" in raw else REDIS_PASSWORD_ENV
        )
        if s.redis_url is None:
            problems.append(f"{where}: a Redis password without --redis-url")
        elif _url_password(s.redis_url) is not None:
            problems.append(
                f"{where}: --redis-url has a password too; give it in one place (not the URL, "
                "which the process list shows)"
            )
    if s.tenants_file is None and not s.listens_on_loopback_only:
        problems.append(
            f"{name}: refusing to serve {s.listen} without a tenants file: anyone who can "
            "reach it could run code. Create one with `sandboxd tenants add NAME --file "
            "tenants.toml` and pass `--tenants tenants.toml`, or listen on 127.0.0.1."
        )
    return problems
