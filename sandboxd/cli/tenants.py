"""`sandboxd tenants add|list|remove`: manage the tenants file (see sandboxd.tenants).

Each subcommand's handler returns 0 on success, 2 for a usage or file error (message on
stderr as `sandboxd: error: ...`, file unchanged).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from typing import Any

from sandboxd_pool.types import Runtime

from .. import tenants
from .parser import Subparsers

__all__ = ["ENV_FILE", "register"]

ENV_FILE = "SANDBOXD_TENANTS"
_EXIT_USAGE = 2
_RUNTIME_NAMES = ", ".join(r.value for r in Runtime)


class _UsageError(Exception):
    pass


def register(subparsers: Subparsers) -> None:
    """Add the `tenants` command and its subcommands."""
    parser = subparsers.add_parser(
        "tenants",
        help="manage the tenants file (API keys, runtimes, limits)",
        description=(
            "Add, list or remove tenants in the tenants file (TOML). API keys are stored only "
            "as sha256 hashes; `add` prints a new key once."
        ),
    )
    commands = parser.add_subparsers(dest="tenants_command", required=True, metavar="COMMAND")
    file_help = f"the tenants file (default: ${ENV_FILE})"

    add = commands.add_parser(
        "add",
        help="add a tenant and print its new API key",
        description=(
            "Add a tenant with a fresh API key, creating the file if it is missing. The key is "
            "printed once, alone on the last line of stdout; only its sha256 is stored."
        ),
    )
    add.add_argument("name", metavar="NAME", help="tenant name: [a-z0-9][a-z0-9_-]{0,62}")
    add.add_argument("--file", metavar="F", help=file_help)
    add.add_argument(
        "--runtimes",
        metavar="LIST",
        help=f"comma-separated runtimes the tenant may use (default: all: {_RUNTIME_NAMES})",
    )
    add.add_argument(
        "--max-concurrent",
        metavar="N",
        help="executions the tenant may run at once "
        f"(default {tenants.DEFAULT_MAX_CONCURRENT_EXECUTIONS})",
    )
    add.add_argument(
        "--max-executions-per-second",
        metavar="RATE",
        help="executions the tenant may start per second, a number > 0 (token bucket, bursts "
        "of max(1, RATE); default: no limit)",
    )
    add.add_argument(
        "--max-cpu-seconds-per-minute",
        metavar="S",
        help="CPU seconds the tenant's executions may use per minute, a number > 0 (default: "
        "no limit)",
    )
    add.add_argument(
        "--max-open-calls",
        metavar="N",
        help="calls the tenant may have open at once on a node (default: the daemon's "
        "--max-calls-per-tenant)",
    )
    add.add_argument(
        "--max-queued-jobs",
        metavar="N",
        help="asynchronous executions the tenant may have accepted and not finished (default: "
        "the daemon's --max-queued-jobs-per-tenant)",
    )
    add.add_argument(
        "--max-async-bytes",
        metavar="N",
        help="memory for the tenant's asynchronous requests and results, bytes (default: the "
        "daemon's --async-max-bytes-per-tenant)",
    )
    add.add_argument(
        "--environments",
        metavar="LIST",
        help="comma-separated environments (the daemon's --environments file) the tenant may "
        "name in its requests (default: none)",
    )
    limit_fields = ", ".join(tenants.LIMIT_FIELDS)
    add.add_argument(
        "--default",
        metavar="FIELD=VALUE",
        action="append",
        default=[],
        help=f"a default limit, used when a request leaves it at 0 (repeatable; FIELD: {limit_fields})",
    )
    add.add_argument(
        "--ceiling",
        metavar="FIELD=VALUE",
        action="append",
        default=[],
        help="a ceiling limit: larger requests are clamped to it (repeatable; same fields)",
    )
    add.add_argument(
        "--egress",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="a destination the tenant's programs may reach through the egress proxy "
        "(repeatable; HOST:PORT, *.DOMAIN:PORT, ADDRESS[/BITS]:PORT; README 'Egress'). Headers "
        "with secrets are added to the file by hand ([[tenants.NAME.egress_headers]])",
    )
    add.add_argument(
        "--egress-private-range",
        metavar="CIDR",
        action="append",
        default=[],
        help="a loopback, link-local or private range the egress proxy may connect to for this "
        "tenant (repeatable; refused otherwise)",
    )
    add.set_defaults(handler=_add)
    list_ = commands.add_parser(
        "list",
        help="list the tenants (never keys)",
        description="One line per tenant: name, runtimes, max concurrent executions, rate and "
        "CPU-time quotas, the open-call and async shares and the environments when set, key "
        "hash prefix.",
    )
    list_.add_argument("--file", metavar="F", help=file_help)
    list_.set_defaults(handler=_list)

    remove = commands.add_parser(
        "remove",
        help="remove a tenant (its API key stops working)",
        description="Remove a tenant from the tenants file. A running daemon keeps it until it reloads.",
    )
    remove.add_argument("name", metavar="NAME", help="the tenant to remove")
    remove.add_argument("--file", metavar="F", help=file_help)
    remove.set_defaults(handler=_remove)


def _error(message: str) -> int:
    print(f"sandboxd: error: {message}", file=sys.stderr)
    return _EXIT_USAGE


def _file(args: argparse.Namespace) -> str:
    path: str | None = args.file or os.environ.get(ENV_FILE)
    if not path:
        raise _UsageError(f"no tenants file: pass --file F or set {ENV_FILE}")
    return path


# Every value is read as a TOML value would be in the file (`3` an integer, `0.5` a float,
# anything else a string) and then checked by the file's own parser (sandboxd.tenants.file), so a flag
# accepts exactly what the file does. A refused value is reported with the flag that gave it.
_FLAGS = {  # tenant field -> (flag, argparse dest)
    "runtimes": ("--runtimes", "runtimes"),
    "max_concurrent_executions": ("--max-concurrent", "max_concurrent"),
    "max_executions_per_second": ("--max-executions-per-second", "max_executions_per_second"),
    "max_cpu_seconds_per_minute": ("--max-cpu-seconds-per-minute", "max_cpu_seconds_per_minute"),
    "max_open_calls": ("--max-open-calls", "max_open_calls"),
    "max_queued_jobs": ("--max-queued-jobs", "max_queued_jobs"),
    "max_async_bytes": ("--max-async-bytes", "max_async_bytes"),
    "environments": ("--environments", "environments"),
    "default_limits": ("--default", "default"),
    "ceiling_limits": ("--ceiling", "ceiling"),
    "egress": ("--egress", "egress"),
    "egress_private_ranges": ("--egress-private-range", "egress_private_range"),
}


def _value(text: str) -> Any:
    """`text` as the TOML value it would be in the file, else the string itself."""
    if "\n" not in text and "\r" not in text:
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            pass
    return text


def _runtimes(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _limits(option: str, items: list[str]) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for item in items:
        field, sep, value = item.partition("=")
        field = field.strip()
        if not sep or not field:
            raise _UsageError(f"{option} {item!r}: expected FIELD=VALUE, e.g. wall_time_ms=5000")
        if field in limits:
            raise _UsageError(f"{option}: {field} is given twice")
        limits[field] = _value(value.strip())
    return limits


def _flag_value(args: argparse.Namespace, field: str) -> str:
    """The flag and what was given to it, for an error about tenant field `field`
    (`runtimes`, `ceiling_limits.wall_time_ms`, ...)."""
    table, _, limit = field.partition(".")
    table, _, index = table.partition("[")
    flag, dest = _FLAGS[table]
    given = getattr(args, dest)
    if index:  # --egress, repeatable: the one refused
        return f"{flag} {given[int(index.rstrip(']'))]!r}"
    if table in ("egress", "egress_private_ranges"):
        return f"{flag} {given!r}"
    if isinstance(given, list):  # --default/--ceiling FIELD=VALUE, repeatable
        mine = [item for item in given if item.partition("=")[0].strip() == limit]
        return f"{flag} {mine[0]!r}" if mine else flag
    return f"{flag} {given!r}"


def _add(args: argparse.Namespace) -> int:
    try:
        path = _file(args)
        key = tenants.add_tenant(
            path,
            args.name,
            runtimes=_runtimes(args.runtimes) if args.runtimes is not None else None,
            max_concurrent_executions=_optional(args.max_concurrent),
            max_executions_per_second=_optional(args.max_executions_per_second),
            max_cpu_seconds_per_minute=_optional(args.max_cpu_seconds_per_minute),
            max_open_calls=_optional(args.max_open_calls),
            max_queued_jobs=_optional(args.max_queued_jobs),
            max_async_bytes=_optional(args.max_async_bytes),
            environments=_runtimes(args.environments) if args.environments is not None else None,
            default_limits=_limits("--default", args.default),
            ceiling_limits=_limits("--ceiling", args.ceiling),
            egress=args.egress,
            egress_private_ranges=args.egress_private_range,
        )
    except tenants.TenantsFileError as e:
        field = e.field or ""
        if field.partition(".")[0].partition("[")[0] in _FLAGS and e.tenant == args.name:
            return _error(f"{_flag_value(args, field)}: {e.reason}")
        return _error(str(e))
    except (_UsageError, OSError) as e:
        return _error(str(e))
    print(f"added tenant {args.name!r} to {path}; its API key (shown once, stored only as a hash):")
    print(key)
    return 0


def _optional(text: str | None) -> Any:
    return None if text is None else _value(text)


def _list(args: argparse.Namespace) -> int:
    try:
        path = _file(args)
        loaded = tenants.load_tenants(path)
    except (_UsageError, tenants.TenantsFileError, OSError) as e:
        return _error(str(e))
    if not loaded:
        print(f"no tenants in {path}", file=sys.stderr)
        return 0
    width = max(len(name) for name in loaded)
    for name in sorted(loaded):
        tenant = loaded[name]
        runtimes = ",".join(sorted(r.value for r in tenant.runtimes))
        quotas = ""
        if tenant.max_executions_per_second is not None:
            quotas += f"max_executions_per_second={tenant.max_executions_per_second:g}  "
        if tenant.max_cpu_seconds_per_minute is not None:
            quotas += f"max_cpu_seconds_per_minute={tenant.max_cpu_seconds_per_minute:g}  "
        for field in ("max_open_calls", "max_queued_jobs", "max_async_bytes"):
            if getattr(tenant, field) is not None:
                quotas += f"{field}={getattr(tenant, field)}  "
        if tenant.egress is not None:  # never a header's value
            quotas += f"egress={','.join(str(r) for r in tenant.egress.rules)}  "
            if tenant.egress.private_ranges:
                quotas += f"egress_private_ranges={','.join(tenant.egress.private_ranges)}  "
            if tenant.egress.headers:
                names = ",".join(f"{h.host}:{h.name}" for h in tenant.egress.headers)
                quotas += f"egress_headers={names}  "
        if tenant.environments:
            quotas += f"environments={','.join(sorted(tenant.environments))}  "
        print(
            f"{name:<{width}}  runtimes={runtimes}  "
            f"max_concurrent={tenant.max_concurrent_executions}  {quotas}"
            f"key_sha256={tenant.key_sha256[:12]}..."
        )
    return 0


def _remove(args: argparse.Namespace) -> int:
    try:
        path = _file(args)
        tenants.remove_tenant(path, args.name)
    except (_UsageError, tenants.TenantsFileError, OSError) as e:
        return _error(str(e))
    print(f"removed tenant {args.name!r} from {path}")
    return 0
