"""Tenants: who may call sandboxd, with which API key, runtimes, limits and concurrency.

Tenants come from a TOML file (DESIGN §7), read with `tomllib` and validated completely at
load: an unknown key, a wrong type or an out-of-range value is a `TenantsFileError` naming the
file, the tenant and the field, and the daemon refuses to start rather than guess.

    [tenants.acme]
    key_sha256 = "9f86d0..."                 # required: hex sha256 of the API key
    runtimes = ["python", "javascript"]      # optional, default: every runtime
    max_concurrent_executions = 8            # optional, default 8
    max_executions_per_second = 20.0         # optional, default no limit (token bucket)
    max_cpu_seconds_per_minute = 120.0       # optional, default no limit
    max_open_calls = 32                      # optional, default --max-calls-per-tenant
    max_queued_jobs = 100                    # optional, default --max-queued-jobs-per-tenant
    max_async_bytes = 268435456              # optional, default --async-max-bytes-per-tenant
    network_allowed = false                  # optional; true is refused (workers have no network)
    [tenants.acme.default_limits]            # optional: used when a request leaves a limit at 0
    wall_time_ms = 5000
    [tenants.acme.ceiling_limits]            # optional: the most a request may ask for
    memory_bytes = 1073741824

API keys are never stored, only their sha256. `add_tenant` and `remove_tenant` edit the file
(atomically, under a lock on its directory); `tomllib` only reads, so they write with the small
serializer below and re-load what they are about to write before replacing the file.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sandboxd_pool.types import CEILING_LIMITS, DEFAULT_LIMITS, Limits, Runtime
from sandboxd_pool.validation import MIN_LIMITS

__all__ = [
    "DEFAULT_MAX_CONCURRENT_EXECUTIONS",
    "LIMIT_FIELDS",
    "Tenant",
    "TenantDirectory",
    "TenantsFileError",
    "add_tenant",
    "default_tenant",
    "hash_key",
    "load_tenants",
    "new_key",
    "remove_tenant",
]

DEFAULT_MAX_CONCURRENT_EXECUTIONS = 8
DEFAULT_TENANT_MAX_CONCURRENT_EXECUTIONS = 16
MAX_EXECUTIONS_PER_SECOND = 1_000_000.0
MAX_CPU_SECONDS_PER_MINUTE = 1_000_000.0
MAX_OPEN_CALLS = 100_000
MAX_QUEUED_JOBS = 1_000_000
MAX_ASYNC_BYTES = 1024**4  # 1 TiB
LIMIT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Limits))
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_KEY_SHA256_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
_TENANT_KEYS = frozenset(
    {
        "key_sha256",
        "runtimes",
        "max_concurrent_executions",
        "network_allowed",
        "max_executions_per_second",
        "max_cpu_seconds_per_minute",
        "max_open_calls",
        "max_queued_jobs",
        "max_async_bytes",
        "default_limits",
        "ceiling_limits",
    }
)

FILE_HEADER = """\
# sandboxd tenants file (DESIGN §7). Managed by `sandboxd tenants add|list|remove`; it may
# also be edited by hand (comments are kept where possible). One table per tenant:
#
#   [tenants.NAME]                   NAME: lowercase letters, digits, '_' and '-' (max 63)
#   key_sha256 = "..."               required: hex sha256 of the tenant's API key; the key
#                                    itself is never stored (it is shown once by `add`)
#   runtimes = ["python", "javascript"]   optional, default: every runtime
#   max_concurrent_executions = 8    optional, default 8: executions running at once
#                                    (cluster-wide with --redis-url, else on this node)
#   max_executions_per_second = 20.0 optional, default no limit: executions started per
#                                    second (token bucket, bursts up to max(1, rate))
#   max_cpu_seconds_per_minute = 120 optional, default no limit: CPU seconds the tenant's
#                                    executions may use per minute (sliding window)
#   max_open_calls = 32              optional, default the daemon's --max-calls-per-tenant:
#                                    calls open at once on a node (more are refused)
#   max_queued_jobs = 100            optional, default --max-queued-jobs-per-tenant: async
#                                    executions accepted and not finished
#   max_async_bytes = 268435456      optional, default --async-max-bytes-per-tenant: memory
#                                    for the tenant's async requests and results
#   network_allowed = false          optional; true is refused: workers have no network
#   [tenants.NAME.default_limits]    optional: used when a request leaves a limit at 0
#   [tenants.NAME.ceiling_limits]    optional: the most a request may ask for (larger
#                                    requests are clamped); at most the built-in ceilings
#
# Limit fields (integers; omit a field to use the built-in value): wall_time_ms,
# cpu_time_ms, memory_bytes, max_output_bytes (per stream), max_processes, tmpfs_bytes.
"""


class TenantsFileError(ValueError):
    """The tenants file (or an edit of it) is invalid. The message says where and why."""

    def __init__(
        self, path: str, message: str, *, tenant: str | None = None, field: str | None = None
    ) -> None:
        where = f"{path}: " + (f"tenant {tenant!r}: " if tenant is not None else "")
        super().__init__(where + message)
        self.reason = message  # without the file and the tenant
        self.path = path
        self.tenant = tenant
        self.field = field


@dataclass(frozen=True)
class Tenant:
    name: str
    key_sha256: str  # hex sha256 of the API key; "" only for the keyless zero-config tenant
    runtimes: frozenset[Runtime]
    default_limits: Limits  # complete: overrides over DEFAULT_LIMITS, clamped to the ceiling
    ceiling_limits: Limits  # complete: overrides over CEILING_LIMITS, each <= CEILING_LIMITS
    max_concurrent_executions: int = DEFAULT_MAX_CONCURRENT_EXECUTIONS
    network_allowed: bool = False
    max_executions_per_second: float | None = None  # None: no rate limit
    max_cpu_seconds_per_minute: float | None = None  # None: no CPU-time quota
    # None: the daemon's setting (--max-calls-per-tenant, --max-queued-jobs-per-tenant,
    # --async-max-bytes-per-tenant)
    max_open_calls: int | None = None  # calls open at once on a node
    max_queued_jobs: int | None = None  # async executions accepted and not finished
    max_async_bytes: int | None = None  # async memory: requests with room for output, results

    def effective_limits(self, requested: Limits) -> Limits:
        """The limits an execution runs with: a zero field takes the tenant's default, then
        every field is clamped to the tenant's ceiling (a larger request is lowered, never
        rejected). Negative values are passed through for request validation to reject."""
        merged = requested.merged_over(self.default_limits)
        return _clamp(merged, self.ceiling_limits)


def _clamp(limits: Limits, ceiling: Limits) -> Limits:
    return Limits(**{f: min(getattr(limits, f), getattr(ceiling, f)) for f in LIMIT_FIELDS})


def hash_key(key: str) -> str:
    """The hex sha256 of an API key.

    A fast, unsalted hash is right here: keys are 32 random bytes from `secrets` (see
    `new_key`), so there is nothing to brute-force, and authentication stays one hash plus a
    dict lookup. Slow password hashes (bcrypt, scrypt) are for low-entropy human secrets.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh API key: "sbx_" and 32 random bytes, URL-safe base64 (43 characters)."""
    return "sbx_" + secrets.token_urlsafe(32)


def default_tenant() -> Tenant:
    """The keyless tenant used when no tenants file is configured (zero-config, one node)."""
    return Tenant(
        name="default",
        key_sha256="",
        runtimes=frozenset(Runtime),
        default_limits=_clamp(DEFAULT_LIMITS, CEILING_LIMITS),
        ceiling_limits=CEILING_LIMITS,
        max_concurrent_executions=DEFAULT_TENANT_MAX_CONCURRENT_EXECUTIONS,
    )


class TenantDirectory:
    """Looks tenants up by API key.

    A directory is either keyed (every tenant has a key hash, all distinct) or keyless: the
    single zero-config tenant from `default_tenant()`, which every caller is, whatever key
    it sends (authentication is off). Mixing the two would let anyone in, so it is refused.
    """

    def __init__(self, tenants: Mapping[str, Tenant]) -> None:
        self._by_name: dict[str, Tenant] = {}
        self._by_hash: dict[str, Tenant] = {}
        self._keyless: Tenant | None = None
        for name, tenant in tenants.items():
            if name != tenant.name:
                raise ValueError(f"tenant {tenant.name!r} is filed under the name {name!r}")
            if not tenant.key_sha256:
                if len(tenants) != 1:
                    raise ValueError(
                        f"tenant {name!r} has no key; a keyless tenant must be the only one"
                    )
                self._keyless = tenant
            else:
                other = self._by_hash.get(tenant.key_sha256)
                if other is not None:
                    raise ValueError(f"tenants {other.name!r} and {name!r} have the same key")
                self._by_hash[tenant.key_sha256] = tenant
            self._by_name[name] = tenant

    @property
    def requires_key(self) -> bool:
        """False for the keyless zero-config directory (authentication is off)."""
        return self._keyless is None

    def authenticate(self, api_key: str) -> Tenant | None:
        """The tenant owning `api_key`, or None. The lookup is by sha256, so comparing the
        hashes in constant time buys nothing: an attacker cannot steer the hash's prefix."""
        if self._keyless is not None:
            return self._keyless
        if not api_key:
            return None
        return self._by_hash.get(hash_key(api_key))

    def get(self, name: str) -> Tenant | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._by_name[name] for name in self.names())


# --------------------------------------------------------------------------- loading


def load_tenants(path: str | os.PathLike[str]) -> dict[str, Tenant]:
    """Read and validate the tenants file; {} for a file with no tenants."""
    label = os.fspath(path)
    return _parse(_read(label), label)[1]


def _read(label: str) -> str:
    try:
        with open(label, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise TenantsFileError(label, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TenantsFileError(label, f"cannot read: {e}") from None


def _parse(text: str, label: str) -> tuple[dict[str, Any], dict[str, Tenant]]:
    """(the raw TOML document, the validated tenants)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TenantsFileError(label, f"not valid TOML: {e}") from None
    unknown = sorted(set(document) - {"tenants"})
    if unknown:
        raise TenantsFileError(
            label, f"unknown top-level key {unknown[0]!r} (only [tenants.NAME] tables belong here)"
        )
    raw_tenants = document.get("tenants", {})
    if not isinstance(raw_tenants, dict):
        raise TenantsFileError(label, "'tenants' must be a table of [tenants.NAME] tables")
    tenants: dict[str, Tenant] = {}
    owner_of_hash: dict[str, str] = {}
    for name, raw in raw_tenants.items():
        tenant = _tenant(label, name, raw)
        other = owner_of_hash.get(tenant.key_sha256)
        if other is not None:
            raise TenantsFileError(
                label,
                f"key_sha256 is the same as tenant {other!r} has; every tenant needs its own API key",
                tenant=name,
                field="key_sha256",
            )
        owner_of_hash[tenant.key_sha256] = name
        tenants[name] = tenant
    return document, tenants


_ErrorFactory = Callable[[str, str], "TenantsFileError"]  # (field, message) -> error


def _check_name(label: str, name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise TenantsFileError(
            label,
            f"invalid tenant name {name!r}: use 1-63 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit",
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tenant(label: str, name: str, raw: object) -> Tenant:
    _check_name(label, name)

    def error(field: str, message: str) -> TenantsFileError:
        return TenantsFileError(label, message, tenant=name, field=field)

    if not isinstance(raw, dict):
        raise error("", f"[tenants.{name}] must be a table, got {_toml_type(raw)}")
    for key in raw:
        if key not in _TENANT_KEYS:
            raise error(key, f"unknown key {key!r} (known: {', '.join(sorted(_TENANT_KEYS))})")

    if "key_sha256" not in raw:
        raise error(
            "key_sha256", "key_sha256 is missing (add the tenant with `sandboxd tenants add`)"
        )
    key_sha256 = raw["key_sha256"]
    if not isinstance(key_sha256, str) or not _KEY_SHA256_PATTERN.fullmatch(key_sha256):
        raise error(
            "key_sha256",
            f"key_sha256 must be 64 hex digits (the sha256 of the API key), got {key_sha256!r}",
        )

    runtimes = frozenset(Runtime)
    if "runtimes" in raw:
        runtimes = _runtimes(raw["runtimes"], error)

    max_concurrent = raw.get("max_concurrent_executions", DEFAULT_MAX_CONCURRENT_EXECUTIONS)
    if not _is_int(max_concurrent) or max_concurrent < 1:
        raise error(
            "max_concurrent_executions",
            f"max_concurrent_executions must be an integer >= 1, got {max_concurrent!r}",
        )

    network_allowed = raw.get("network_allowed", False)
    if not isinstance(network_allowed, bool):
        raise error(
            "network_allowed",
            f"network_allowed must be true or false, got {network_allowed!r}",
        )
    if network_allowed:
        raise error(
            "network_allowed",
            "network_allowed = true is not supported by this build of sandboxd: workers have "
            "no network. Remove the line or set it to false.",
        )

    open_calls = _optional_count(raw, "max_open_calls", MAX_OPEN_CALLS, error)
    queued_jobs = _optional_count(raw, "max_queued_jobs", MAX_QUEUED_JOBS, error)
    async_bytes = _optional_count(raw, "max_async_bytes", MAX_ASYNC_BYTES, error)
    rate = _positive_number(raw, "max_executions_per_second", MAX_EXECUTIONS_PER_SECOND, error)
    cpu = _positive_number(raw, "max_cpu_seconds_per_minute", MAX_CPU_SECONDS_PER_MINUTE, error)

    ceiling_overrides = _limit_overrides(raw, "ceiling_limits", error)
    for field, value in ceiling_overrides.items():
        built_in = getattr(CEILING_LIMITS, field)
        if value > built_in:
            raise error(
                f"ceiling_limits.{field}",
                f"ceiling_limits.{field} = {value} is above this build's ceiling of {built_in}",
            )
    ceiling = Limits(**ceiling_overrides).merged_over(CEILING_LIMITS)

    default_overrides = _limit_overrides(raw, "default_limits", error)
    for field, value in default_overrides.items():
        top = getattr(ceiling, field)
        if value > top:
            source = (
                f"the tenant's ceiling_limits.{field} = {top}"
                if field in ceiling_overrides
                else f"this build's ceiling of {top}"
            )
            raise error(
                f"default_limits.{field}", f"default_limits.{field} = {value} is above {source}"
            )
    defaults = _clamp(Limits(**default_overrides).merged_over(DEFAULT_LIMITS), ceiling)

    return Tenant(
        name=name,
        key_sha256=key_sha256.lower(),
        runtimes=runtimes,
        default_limits=defaults,
        ceiling_limits=ceiling,
        max_concurrent_executions=max_concurrent,
        network_allowed=False,
        max_executions_per_second=rate,
        max_cpu_seconds_per_minute=cpu,
        max_open_calls=open_calls,
        max_queued_jobs=queued_jobs,
        max_async_bytes=async_bytes,
    )


def _positive_number(
    raw: dict[str, Any], field: str, maximum: float, error: _ErrorFactory
) -> float | None:
    """An optional quota: a number > 0 and <= maximum (integers are accepted), else None."""
    if field not in raw:
        return None
    value = raw[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(field, f"{field} must be a number > 0, got {value!r}")
    if not 0 < value <= maximum:  # also refuses nan
        raise error(
            field,
            f"{field} must be > 0 and at most {maximum:g}, got {value!r} (omit it for no limit)",
        )
    return float(value)


def _optional_count(
    raw: dict[str, Any], field: str, maximum: int, error: _ErrorFactory
) -> int | None:
    """An optional bound: an integer in [1, maximum], else None (the daemon's setting)."""
    if field not in raw:
        return None
    value = raw[field]
    if not _is_int(value) or not 1 <= value <= maximum:
        raise error(
            field,
            f"{field} must be an integer from 1 to {maximum}, got {value!r} "
            "(omit the line for the daemon's default)",
        )
    return int(value)


def _runtimes(value: object, error: _ErrorFactory) -> frozenset[Runtime]:
    known = ", ".join(repr(r.value) for r in Runtime)
    if not isinstance(value, list) or not value:
        raise error("runtimes", f"runtimes must be a non-empty list of {known}, got {value!r}")
    runtimes: set[Runtime] = set()
    for item in value:
        try:
            runtime = Runtime(item)
        except ValueError:
            raise error(
                "runtimes", f"runtimes: unknown runtime {item!r} (known: {known})"
            ) from None
        if runtime in runtimes:
            raise error("runtimes", f"runtimes: {item!r} is listed twice")
        runtimes.add(runtime)
    return frozenset(runtimes)


def _limit_overrides(raw: dict[str, Any], table: str, error: _ErrorFactory) -> dict[str, int]:
    value = raw.get(table, {})
    if not isinstance(value, dict):
        raise error(
            table, f"{table} must be a table ([tenants.NAME.{table}]), got {_toml_type(value)}"
        )
    overrides: dict[str, int] = {}
    for field, number in value.items():
        if field not in LIMIT_FIELDS:
            raise error(
                f"{table}.{field}",
                f"{table}: unknown limit {field!r} (known: {', '.join(LIMIT_FIELDS)})",
            )
        minimum = getattr(MIN_LIMITS, field)
        if not _is_int(number) or number < minimum:
            raise error(
                f"{table}.{field}",
                f"{table}.{field} must be an integer >= {minimum}, got {number!r}"
                + (" (omit it to use the built-in value)" if number == 0 else ""),
            )
        overrides[field] = number
    return overrides


def _toml_type(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


# --------------------------------------------------------------------------- editing


def add_tenant(
    path: str | os.PathLike[str],
    name: str,
    *,
    runtimes: Iterable[Runtime | str] | None = None,
    max_concurrent_executions: int | None = None,
    default_limits: Mapping[str, int] | None = None,
    ceiling_limits: Mapping[str, int] | None = None,
    max_executions_per_second: float | None = None,
    max_cpu_seconds_per_minute: float | None = None,
    max_open_calls: int | None = None,
    max_queued_jobs: int | None = None,
    max_async_bytes: int | None = None,
) -> str:
    """Add a tenant with a fresh API key and return the key (it is stored only hashed).

    Creates the file if it is missing; refuses a name already present. The result is
    validated by loading it before it atomically replaces the file, so on any error the
    file is unchanged.
    """
    label = os.fspath(path)
    _check_name(label, name)
    target = os.path.realpath(label)  # edit the file a symlink points to, keep the symlink
    key = new_key()
    # Runtimes and concurrency are written out even when defaulted, so the file says what the
    # tenant gets (and a runtime added to a later build is not granted silently).
    entry: dict[str, Any] = {
        "key_sha256": hash_key(key),
        "runtimes": [
            r.value if isinstance(r, Runtime) else r
            for r in (Runtime if runtimes is None else runtimes)
        ],
        "max_concurrent_executions": (
            DEFAULT_MAX_CONCURRENT_EXECUTIONS
            if max_concurrent_executions is None
            else max_concurrent_executions
        ),
    }
    if max_executions_per_second is not None:
        entry["max_executions_per_second"] = max_executions_per_second
    if max_cpu_seconds_per_minute is not None:
        entry["max_cpu_seconds_per_minute"] = max_cpu_seconds_per_minute
    for field, value in (
        ("max_open_calls", max_open_calls),
        ("max_queued_jobs", max_queued_jobs),
        ("max_async_bytes", max_async_bytes),
    ):
        if value is not None:
            entry[field] = value
    if default_limits:
        entry["default_limits"] = dict(default_limits)
    if ceiling_limits:
        entry["ceiling_limits"] = dict(ceiling_limits)
    _tenant(label, name, entry)  # the file's own rules, before anything is read or written

    with _locked_dir(target):
        try:
            old_text: str | None = _read(label)
        except TenantsFileError:
            if os.path.exists(target):  # not merely missing: unreadable
                raise
            old_text = None
        if old_text is None:
            document: dict[str, Any] = {}
        else:
            document = _parse(old_text, label)[0]
        if name in document.get("tenants", {}):
            raise TenantsFileError(label, "already exists (remove it first)", tenant=name)
        expected = {"tenants": {**document.get("tenants", {}), name: entry}}
        new_text: str | None = None
        if old_text is not None:
            # Append, keeping the operator's comments; used only if it reads back as intended.
            appended = old_text + ("" if old_text.endswith("\n") or not old_text else "\n")
            appended += "\n" + _dump_tenant(name, entry)
            new_text = _if_equivalent(appended, expected)
        if new_text is None:
            new_text = _dump(expected, header=old_text is None)
        _parse(new_text, label)  # validates the new tenant in context (e.g. duplicate keys)
        _write_atomically(target, new_text, label)
    return key


def remove_tenant(path: str | os.PathLike[str], name: str) -> None:
    """Remove a tenant; a TenantsFileError if it is not in the file."""
    label = os.fspath(path)
    target = os.path.realpath(label)
    with _locked_dir(target):
        old_text = _read(label)
        document = _parse(old_text, label)[0]
        tenants = dict(document.get("tenants", {}))
        if name not in tenants:
            known = ", ".join(repr(n) for n in sorted(tenants)) or "none"
            raise TenantsFileError(label, f"no tenant {name!r} (tenants: {known})")
        del tenants[name]
        expected = {"tenants": tenants} if tenants else {}
        new_text = _if_equivalent(_without_tenant_text(old_text, name), expected)
        if new_text is None:
            new_text = _dump(expected, header=True)
        _parse(new_text, label)
        _write_atomically(target, new_text, label)


def _if_equivalent(text: str, expected: dict[str, Any]) -> str | None:
    """`text` if it parses to `expected` (the tenants part), else None."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    if document.get("tenants", {}) != expected.get("tenants", {}):
        return None
    return text if set(document) <= {"tenants"} else None


_HEADER_LINE = re.compile(r"\s*\[[^\[].*")


def _without_tenant_text(text: str, name: str) -> str:
    """`text` with the tables of tenant `name` removed, each with the comment lines directly
    above its header. A best effort on the text: the caller checks the result parses to what
    it should and otherwise re-serializes."""
    lines = text.splitlines(keepends=True)
    headers: list[tuple[int, bool]] = []  # (first line of the block, belongs to `name`)
    for i, line in enumerate(lines):
        if not _HEADER_LINE.match(line):
            continue
        try:
            path = _header_path(tomllib.loads(line))
        except tomllib.TOMLDecodeError:
            continue
        start = i
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        if headers and start <= headers[-1][0]:
            start = i
        headers.append((start, path[:2] == ["tenants", name]))
    keep: list[str] = []
    position = 0
    for index, (start, doomed) in enumerate(headers):
        end = headers[index + 1][0] if index + 1 < len(headers) else len(lines)
        keep.extend(lines[position:start])
        if not doomed:
            keep.extend(lines[start:end])
        position = end
    keep.extend(lines[position:])
    result = "".join(keep)
    while "\n\n\n" in result:
        result = result.replace("\n\n\n", "\n\n")
    return result


def _header_path(document: dict[str, Any]) -> list[str]:
    path: list[str] = []
    node: Any = document
    while isinstance(node, dict) and len(node) == 1:
        key = next(iter(node))
        path.append(key)
        node = node[key]
    return path


def _dump(document: dict[str, Any], *, header: bool) -> str:
    parts = [FILE_HEADER] if header else []
    for name, entry in document.get("tenants", {}).items():
        parts.append(_dump_tenant(name, entry))
    return "\n".join(parts)


def _dump_tenant(name: str, entry: Mapping[str, Any]) -> str:
    """TOML for one tenant: scalars under [tenants.NAME], then one sub-table per limits table.
    Names are checked against NAME_PATTERN, so they are always bare keys."""
    lines = [f"[tenants.{name}]"]
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in entry.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"[tenants.{name}.{key}]")
        lines.extend(f"{field} = {_toml_value(value)}" for field, value in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # finite by validation; repr round-trips ("20.0", "0.5")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the tenants file")


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@contextmanager
def _locked_dir(target: str) -> Iterator[None]:
    """Serialize edits of the file: an exclusive flock on its directory (the file itself is
    replaced by each edit, so a lock on it would not hold)."""
    directory = os.path.dirname(target)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise TenantsFileError(target, f"cannot open its directory: {e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomically(target: str, text: str, label: str) -> None:
    """Write `text` to a 0600 temp file beside `target`, fsync it, then rename it over
    `target`: readers see the old file or the new one, never a half-written one."""
    directory = os.path.dirname(target)
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tenants-", suffix=".tmp", dir=directory)
    except OSError as e:
        raise TenantsFileError(label, f"cannot write: {e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            if existing is not None:
                # keep the owner (e.g. root editing the daemon's file)
                with suppress(PermissionError):
                    os.fchown(f.fileno(), existing.st_uid, existing.st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
