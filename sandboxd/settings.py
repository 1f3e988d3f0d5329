"""`sandboxd serve` settings: each one described once, as a field of `Settings`.

A field made with `setting(...)` carries its flag, its environment variable (SANDBOXD_ and
the flag's name unless it says otherwise), its default, its help and its kind: what text it
accepts and the value it becomes (the check of a single value). From these records come the
command line (`add_arguments`, so `sandboxd serve --help`), the reading of flags and the
environment (`from_args`: a flag wins; one message per bad value, naming the flag or variable),
and the settings table of docs/operations.md (`markdown_table`; tests/unit/test_settings_doc.py
keeps the two equal). What involves more than one setting (a TLS pair, the worker slots, a
public address without tenants) is checked afterwards, in `_check`."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from sandboxd_pool.jail.cgroups import PARENT_NAME_PATTERN
from sandboxd_pool.jail.mode import MAX_SLOTS

if TYPE_CHECKING:
    import argparse

MIB = 1024 * 1024
DEFAULT_LISTEN = "127.0.0.1:50051"
REDIS_PASSWORD_ENV = "SANDBOXD_REDIS_PASSWORD"

T = TypeVar("T")


class SettingsError(ValueError):
    """One or more bad settings; the message has one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class Kind:
    """What a setting accepts. `parse` turns the text into the value or raises ValueError with
    the problem (the message follows the flag or variable's name); `accepts` says what it takes
    for the table ("" when the help says it)."""

    parse: Callable[[str], Any]
    accepts: str = ""
    switch: bool = False  # a flag without a value (the variable takes true or false)


def integer(lo: int, hi: int, accepts: str | None = None) -> Kind:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range [{lo}, {hi}]")
        return value

    return Kind(parse, f"{lo} to {hi}" if accepts is None else accepts)


def _size(n: int) -> str:
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return str(n)


def byte_count(lo: int, hi: int) -> Kind:
    return integer(lo, hi, accepts=f"bytes, {_size(lo)} to {_size(hi)}")


def seconds(lo: float, hi: float) -> Kind:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number of seconds") from None
        if not lo <= value <= hi:  # also refuses nan
            raise ValueError(f"{value:g} is out of range [{lo:g}, {hi:g}] seconds")
        return value

    return Kind(parse, f"{lo:g} to {hi:g} s")


def one_of(*choices: str, upper: bool = False) -> Kind:
    listed = ", ".join(choices[:-1]) + f" or {choices[-1]}"

    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text.strip().lower()
        if value not in choices:
            raise ValueError(f"{text!r} is not {listed}")
        return value

    return Kind(parse, listed)


def _text(text: str) -> str:
    return text


TEXT = Kind(_text)


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


def _listen(text: str) -> str:
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"{text!r}: the socket's directory does not exist")
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:50051, [::]:50051) or unix:PATH"
        )
    problem = _host_problem(host.strip("[]"))
    if problem is not None:
        raise ValueError(f"{text!r}: {problem}")
    return text


def _host(text: str) -> str:
    problem = _host_problem(text)
    if problem is not None:
        raise ValueError(f"{text!r}: {problem}")
    return text


def _tenants_file(text: str) -> str:
    if not os.path.isfile(text):
        raise ValueError(
            f"{text!r} does not exist (create it with `sandboxd tenants add NAME --file FILE`)"
        )
    return text


def _existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise ValueError(f"{text!r} does not exist")
    return text


def _egress_hosts_file(text: str) -> str:
    """A hosts file the egress proxy can load (every line `IP NAME...`)."""
    from sandboxd_pool.egress.hosts import load_hosts_file

    _existing_file(text)
    try:
        load_hosts_file(text)
    except (OSError, ValueError) as e:
        raise ValueError(f"{text!r}: {e}") from None
    return text


def _ca_bundle_file(text: str) -> str:
    """A file of PEM CA certificates the proxy can load."""
    _existing_file(text)
    try:
        ssl.create_default_context().load_verify_locations(cafile=text)
    except ssl.SSLError as e:
        raise ValueError(f"{text!r}: not PEM CA certificates ({e.reason or e})") from None
    except OSError as e:
        raise ValueError(f"{text!r}: cannot read it ({e.strerror or e})") from None
    return text


def _executable(text: str) -> str:
    if not os.path.isabs(text):
        raise ValueError(f"{text!r} must be an absolute path")
    if not os.path.isfile(text) or not os.access(text, os.X_OK):
        raise ValueError(f"{text!r} is not an executable file")
    return text


def _runtimes(text: str) -> tuple[str, ...]:
    names = tuple(r.strip().lower() for r in text.split(",") if r.strip())
    if not names or any(r not in ("python", "javascript") for r in names):
        raise ValueError(f"{text!r}: each runtime must be 'python' or 'javascript'")
    if len(set(names)) != len(names):
        raise ValueError(f"{text!r}: name each runtime once")
    return names


def _cgroup_name(text: str) -> str:
    if not PARENT_NAME_PATTERN.fullmatch(text):
        raise ValueError(
            f"{text!r} is not one directory name (letters, digits, '_', '.', '-'; at most 64; "
            "not starting with '.' or '-'; not 'daemon', the daemon's own cgroup in a delegated "
            "one)"
        )
    return text


def _environments_file(text: str) -> str:
    """The environments file, read and validated whole (sandboxd.environments)."""
    from .environments import EnvironmentsFileError, load_declarations

    try:
        load_declarations(text)
    except EnvironmentsFileError as e:
        raise ValueError(str(e)) from None
    return text


def _store_directory(text: str) -> str:
    if not os.path.isabs(text):
        raise ValueError(f"{text!r} must be an absolute path")
    return text


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        problem: str | None = "unknown scheme"
    else:
        from .cluster.link import url_problem  # the cluster code parses it, as it will at start

        problem = url_problem(text)
    if problem is not None:
        raise ValueError(
            f"{_redacted(text)!r} is not a Redis URL ({problem}; redis://HOST:PORT/DB, "
            "rediss://HOST:PORT/DB or unix:///PATH)"
        )
    return text


def _password_file(text: str) -> str:
    """The file's first line (without the newline), which must not be empty."""
    try:
        with open(text, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {text!r}: {e}") from None
    if not password:
        raise ValueError(f"{text!r} is empty (its first line is the password)")
    return text


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"{text!r} is not true/false")
    return text.lower() in ("true", "1")


SWITCH = Kind(_boolean, "the variable: true or false", switch=True)


# --------------------------------------------------------------------------- the records


@dataclass(frozen=True)
class Setting:
    """One setting: everything said about it, in one place."""

    name: str  # the Settings field
    flag: str | None  # None: set by its environment variable only
    env: str
    default: Any
    shown: str  # the default as the help and the table show it
    help: str
    kind: Kind
    secret: bool = False  # never shown or logged

    @property
    def dest(self) -> str:
        """The argparse attribute of the flag."""
        assert self.flag is not None
        return self.flag[2:].replace("-", "_")

    @property
    def source_names(self) -> str:
        return self.flag if self.flag is not None else self.env


def setting(
    default: T,
    flag: str | None,
    help: str,
    kind: Kind = TEXT,
    *,
    env: str | None = None,
    shown: str | None = None,
    secret: bool = False,
) -> T:
    """A Settings field with its description (see the module doc)."""
    if env is None:
        assert flag is not None
        env = "SANDBOXD_" + flag[2:].upper().replace("-", "_")
    if shown is None:
        shown = _shown(default)
    record = Setting("", flag, env, default, shown, help, kind, secret)
    field: T = dataclasses.field(default=default, repr=not secret, metadata={"setting": record})
    return field


def _shown(default: object) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, int) and default >= MIB:
        return f"{default} ({_size(default)})"
    return str(default)


@dataclass(frozen=True)
class Settings:
    # -- serving
    listen: str = setting(
        DEFAULT_LISTEN,
        "--listen",
        "HOST:PORT (port 0 picks a free port; the `listening` log line says which) or "
        "unix:PATH to serve gRPC on",
        Kind(_listen),
    )
    tenants_file: str | None = setting(
        None,
        "--tenants",
        "tenants file (TOML, see `sandboxd tenants add`); without one a single keyless tenant "
        "`default` is served on loopback only",
        Kind(_tenants_file),
    )
    metrics_port: int | None = setting(
        None,
        "--metrics-port",
        "serve Prometheus metrics (/metrics) on this HTTP port; 0 picks a free port",
        integer(0, 65535),
        shown="off",
    )
    metrics_host: str = setting(
        "127.0.0.1", "--metrics-host", "address of the metrics endpoint", Kind(_host)
    )
    metrics_tenant_labels: bool = setting(
        False,
        "--metrics-tenant-labels",
        "label execution counters by tenant (watch the cardinality)",
        SWITCH,
    )
    warm_workers_per_runtime: int = setting(
        4, "--warm-workers", "ready workers kept per runtime", integer(1, 256)
    )
    max_concurrent_executions: int = setting(
        16,
        "--max-concurrent",
        "executions running at once on this node, all tenants together; more wait for a "
        "slot. Warm workers x runtimes + this is at most the engine's 4096 worker slots",
        integer(1, 4096),
    )
    max_message_bytes: int = setting(
        64 * MIB,
        "--max-message-bytes",
        "largest request and response payload (stdin, files, output); gRPC framing gets 1 MiB "
        "on top",
        byte_count(4096, 1024 * MIB),
    )
    tls_cert_file: str | None = setting(
        None,
        "--tls-cert",
        "PEM certificate chain; enables TLS (with --tls-key)",
        Kind(_existing_file),
    )
    tls_key_file: str | None = setting(
        None, "--tls-key", "PEM private key for --tls-cert", Kind(_existing_file)
    )
    drain_grace_s: float = setting(
        30.0,
        "--drain-grace",
        "seconds in-flight executions may take to finish after SIGTERM",
        seconds(0, 3600),
        env="SANDBOXD_DRAIN_GRACE_S",
    )
    runtimes: tuple[str, ...] = setting(
        ("python", "javascript"),
        "--runtimes",
        "comma-separated runtimes to serve",
        Kind(_runtimes, "python, javascript"),
    )
    python_path: str | None = setting(
        None,
        "--python",
        "Python interpreter for workers (an absolute path)",
        Kind(_executable),
        shown="the daemon's own",
    )
    node_path: str | None = setting(
        None,
        "--node",
        "Node.js binary for workers (an absolute path)",
        Kind(_executable),
        shown="node on PATH",
    )
    jail_mode: str = setting(
        "auto",
        "--jail-mode",
        "how workers are jailed: root mode as host root, subuid mode as any other user, auto "
        "picks (docs/architecture.md); a mode this host cannot do exits 2 naming what to add",
        one_of("auto", "root", "subuid"),
    )
    cgroup_parent: str = setting(
        "sandboxd",
        "--cgroup-parent",
        "the cgroup (one directory name, not `daemon`, made in each hierarchy; on cgroup v2 in "
        "the daemon's delegated cgroup if it has one, docs/architecture.md) holding this "
        "daemon's worker cgroups; daemons sharing it share its limits (a pids.max on it, say), "
        "so give each daemon its own name to give it a budget of its own",
        Kind(_cgroup_name),
    )
    # -- environments (sandboxd/environments/, docs/environments.md)
    environments_file: str | None = setting(
        None,
        "--environments",
        "environments file (TOML, [environments.NAME] tables: runtime, packages, preload, "
        "warm_workers) whose builds requests may name; each must have been built with "
        "`sandboxd environments build`, else the daemon exits 2 naming it",
        Kind(_environments_file),
    )
    environments_store: str = setting(
        "/var/lib/sandboxd/environments",
        "--environments-store",
        "directory of the environments' builds (read-only, content-addressed; "
        "`sandboxd environments build` writes it, the daemon only reads it)",
        Kind(_store_directory),
    )
    # -- the Python template (docs/architecture.md): a fresh one after so many forks or seconds
    template_max_forks: int = setting(
        250,
        "--template-max-forks",
        "workers one Python template forks before a fresh template replaces it (its children "
        "share its hash seed, stack-canary seed and address layout)",
        integer(1, 100_000),
    )
    template_max_age_s: float = setting(
        300.0,
        "--template-max-age-s",
        "seconds a Python template lives before a fresh one replaces it",
        seconds(1, 86_400),
    )
    log_level: str = setting(
        "INFO",
        "--log-level",
        "JSON logs on stderr from this level",
        one_of("DEBUG", "INFO", "WARNING", "ERROR", upper=True),
    )
    # -- asynchronous executions (Submit)
    result_retention_s: float = setting(
        3600.0,
        "--result-retention-s",
        "seconds a finished async execution's result (and its idempotency key) is kept",
        seconds(1, 7 * 86400),
    )
    max_queued_jobs: int = setting(
        1000,
        "--max-queued-jobs",
        "async executions waiting to start on this node (in the cluster with --redis-url); "
        "more are refused (RESOURCE_EXHAUSTED)",
        integer(1, 1_000_000),
    )
    async_max_bytes: int = setting(
        1024 * MIB,
        "--async-max-bytes",
        "memory for queued async requests and kept results; more are refused",
        byte_count(16 * MIB, 1024 * 1024 * MIB),
    )
    max_queued_jobs_per_tenant: int = setting(
        100,
        "--max-queued-jobs-per-tenant",
        "a tenant's async executions accepted and not finished (on this node, or in the "
        "cluster with --redis-url); more are refused; a tenant's max_queued_jobs wins",
        integer(1, 1_000_000),
    )
    async_max_bytes_per_tenant: int = setting(
        256 * MIB,
        "--async-max-bytes-per-tenant",
        "a tenant's share of the async memory (its queued requests with room for their "
        "output, and its kept results); a tenant's max_async_bytes wins",
        byte_count(1 * MIB, 1024 * 1024 * MIB),
    )
    # -- the edge (api/call_guard.py): what callers can hold before and while they are served
    max_calls_per_tenant: int = setting(
        32,
        "--max-calls-per-tenant",
        "calls of one tenant open at once on this node (waiting for their request, running, "
        "long-polling or sending); more are refused at once; a tenant's max_open_calls wins",
        integer(1, 100_000),
    )
    max_public_calls: int = setting(
        16,
        "--max-public-calls",
        "health and reflection calls (which need no API key) open at once; more are refused "
        "at once",
        integer(1, 10_000),
    )
    public_call_max_s: float = setting(
        10.0,
        "--public-call-max-s",
        "seconds a health or reflection call (a Watch, a reflection stream) may stay open",
        seconds(0.1, 3600),
    )
    idle_timeout_s: float = setting(
        30.0,
        "--idle-timeout-s",
        "seconds a call may wait for its request message, or for its client to take a "
        "response message (plus a second per MiB of it), before it is ended with "
        "DEADLINE_EXCEEDED",
        seconds(0.1, 3600),
    )
    max_streams_per_connection: int = setting(
        100,
        "--max-streams-per-connection",
        "calls (HTTP/2 streams) one connection may have open at once; a client waits for more",
        integer(1, 100_000),
    )
    # -- cluster (cluster/): None keeps everything on this node
    redis_url: str | None = setting(
        None,
        "--redis-url",
        "Redis shared by the nodes of a cluster (redis://HOST:PORT/DB, rediss://, unix://): "
        "async executions on a Redis Stream, tenant quotas cluster-wide",
        Kind(_redis_url),
    )
    redis_password_file: str | None = setting(
        None,
        "--redis-password-file",
        "file whose first line is the Redis password, so that it is not in --redis-url, "
        f"which the process list shows (or set {REDIS_PASSWORD_ENV})",
        Kind(_password_file),
    )
    redis_password: str | None = setting(
        None,
        None,
        "the Redis password, when it is neither in the URL nor in --redis-password-file",
        env=REDIS_PASSWORD_ENV,
        secret=True,
    )
    redis_visibility_timeout_s: float = setting(
        30.0,
        "--redis-visibility-timeout-s",
        "seconds after which a job whose node stopped renewing it (died) is run by another node",
        seconds(1, 3600),
    )
    redis_lease_s: float = setting(
        30.0,
        "--redis-lease-s",
        "seconds after which the concurrency slots of a node that died are free again",
        seconds(1, 3600),
    )
    # -- egress (pool/sandboxd_pool/egress/, docs/egress.md)
    egress_hosts_file: str | None = setting(
        None,
        "--egress-hosts",
        "hosts file (`IP NAME...` per line) the egress proxy resolves names from before DNS; "
        "its addresses are checked like any other",
        Kind(_egress_hosts_file),
    )
    egress_ca_bundle_file: str | None = setting(
        None,
        "--egress-ca-bundle",
        "PEM CA certificates the egress proxy trusts for the destinations' TLS, beside the "
        "system store",
        Kind(_ca_bundle_file),
    )
    # field -> the flag or environment variable it came from, for messages after startup
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def name_of(self, field_name: str) -> str:
        """How the operator set `field_name` (`--listen` or `SANDBOXD_LISTEN`), for messages
        about a value that only fails once used (a port already taken)."""
        if field_name in self.sources:
            return self.sources[field_name]
        return SETTINGS_BY_NAME[field_name].source_names

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


SETTINGS: tuple[Setting, ...] = tuple(
    dataclasses.replace(f.metadata["setting"], name=f.name)
    for f in dataclasses.fields(Settings)
    if "setting" in f.metadata
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


# --------------------------------------------------------------------------- reading


def add_arguments(parser: argparse.ArgumentParser, names: Collection[str] | None = None) -> None:
    """Every setting with a flag (or those of `names`: a command other than serve that shares
    some), its help ending in what it accepts, its default and its environment variable."""
    for s in SETTINGS:
        if s.flag is None or (names is not None and s.name not in names):
            continue
        text = f"{s.help} ({s.kind.accepts + '; ' if s.kind.accepts else ''}default {s.shown})"
        text = text.replace("%", "%%") + f" [env {s.env}]"
        if s.kind.switch:
            parser.add_argument(s.flag, action="store_const", const="true", help=text)
        else:
            parser.add_argument(s.flag, default=None, help=text)


def from_args(
    args: argparse.Namespace,
    env: Mapping[str, str] | None = None,
    names: Collection[str] | None = None,
) -> Settings:
    """Settings from parsed flags and the environment; SettingsError lists every bad value.
    `names`: read only these (a command that shares some settings); the others keep their
    defaults."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if names is not None and s.name not in names:
            continue
        given = getattr(args, s.dest, None) if s.flag is not None else None
        if given is not None:
            name, text = s.flag, given
        elif env.get(s.env):
            name, text = s.env, env[s.env]
        else:
            continue
        assert name is not None
        sources[s.name] = name
        try:
            values[s.name] = s.kind.parse(text)
        except ValueError as e:
            problems.append(f"{name}: {e}")
    if "redis_password_file" in values:
        if "redis_password" in values:
            problems.append(
                f"{REDIS_PASSWORD_ENV} and {sources['redis_password_file']} both give the "
                "Redis password; give one"
            )
        values["redis_password"] = _first_line(values["redis_password_file"])
    settings = Settings(**values, sources=sources)
    problems.extend(_check(settings))
    if problems:
        raise SettingsError(problems)
    return settings


def _first_line(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def _tls_problem(cert_file: str, key_file: str) -> str | None:
    """Why the PEM files cannot serve TLS (not PEM, key and certificate not a pair), or None."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as e:
        return str(e)
    return None


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _check(s: Settings) -> list[str]:
    """What involves more than one setting."""
    problems: list[str] = []
    if ("tls_cert_file" in s.sources) != ("tls_key_file" in s.sources):  # given, bad or not
        problems.append("--tls-cert and --tls-key must be given together")
    cert, key = s.tls_cert_file, s.tls_key_file
    if cert is not None and key is not None and os.path.isfile(cert) and os.path.isfile(key):
        problem = _tls_problem(cert, key)
        if problem is not None:
            names = f"{s.name_of('tls_cert_file')}, {s.name_of('tls_key_file')}"
            problems.append(f"{names}: cannot load the certificate and its key: {problem}")
    environment_workers = 0
    if s.environments_file is not None:  # read and checked by its kind already
        from .environments import load_declarations

        for declaration in load_declarations(s.environments_file).values():
            environment_workers += declaration.warm_workers
            if declaration.runtime.value not in s.runtimes:
                problems.append(
                    f"{s.name_of('environments_file')}: environment {declaration.name!r} is "
                    f"for {declaration.runtime.value}, which {s.name_of('runtimes')} does not "
                    "serve"
                )
    slots = len(s.runtimes) * s.warm_workers_per_runtime + s.max_concurrent_executions
    slots += environment_workers
    if slots > MAX_SLOTS:
        problems.append(
            f"{s.name_of('warm_workers_per_runtime')} x {len(s.runtimes)} runtimes + "
            f"{s.name_of('max_concurrent_executions')}"
            + (
                f" + {environment_workers} environments' warm workers"
                if environment_workers
                else ""
            )
            + f" = {slots} workers at once, more than the {MAX_SLOTS} worker slots (uids) the "
            "engine has"
        )
    if s.redis_password is not None or s.redis_password_file is not None:
        where = s.name_of("redis_password_file" if s.redis_password_file else "redis_password")
        if s.redis_url is None:
            problems.append(f"{where}: a Redis password without --redis-url")
        elif _url_password(s.redis_url) is not None:
            problems.append(
                f"{where}: --redis-url has a password too; give it in one place (not the URL, "
                "which the process list shows)"
            )
    if s.tenants_file is None and not s.listens_on_loopback_only:
        problems.append(
            f"{s.name_of('listen')}: refusing to serve {s.listen} without a tenants file: "
            "anyone who can reach it could run code. Create one with `sandboxd tenants add "
            "NAME --file tenants.toml` and pass `--tenants tenants.toml`, or listen on "
            "127.0.0.1."
        )
    return problems


# --------------------------------------------------------------------------- the table


def markdown_table() -> str:
    """The settings table of docs/operations.md."""
    rows = [
        "| Flag | Environment | Default | Meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        flag = f"`{s.flag}`" if s.flag is not None else "(none)"
        accepts = f" ({s.kind.accepts})" if s.kind.accepts else ""
        meaning = (s.help + accepts).replace("|", "\\|")
        rows.append(f"| {flag} | `{s.env}` | {s.shown} | {meaning} |")
    return "\n".join(rows) + "\n"
