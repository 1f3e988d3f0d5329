"""Reading the tenants file: parsed with `tomllib` and validated completely (see the package
doc for its format)."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from typing import Any

from sandboxd_pool.config import ENVIRONMENT_NAME
from sandboxd_pool.egress import EgressHeader, EgressPolicy, EgressRule
from sandboxd_pool.types import CEILING_LIMITS, DEFAULT_LIMITS, Limits, Runtime
from sandboxd_pool.validation import MIN_LIMITS

from .model import (
    DEFAULT_MAX_CONCURRENT_EXECUTIONS,
    LIMIT_FIELDS,
    NAME_PATTERN,
    Tenant,
    TenantsFileError,
    _clamp,
)

MAX_EXECUTIONS_PER_SECOND = 1_000_000.0
MAX_CPU_SECONDS_PER_MINUTE = 1_000_000.0
MAX_OPEN_CALLS = 100_000
MAX_QUEUED_JOBS = 1_000_000
MAX_ASYNC_BYTES = 1024**4  # 1 TiB
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
        "environments",
        "default_limits",
        "ceiling_limits",
        "egress",
        "egress_private_ranges",
        "egress_headers",
    }
)
_HEADER_KEYS = frozenset({"host", "name", "value"})


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
    environments = _environments(raw.get("environments", []), error)

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
            "network_allowed = true is not supported: workers have no network of their own. "
            'Give the tenant egress rules instead (egress = ["HOST:PORT"], docs/egress.md) '
            "and remove the line or set it to false.",
        )
    egress = _egress(raw, error)

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
        egress=egress,
        environments=environments,
    )


def _egress(raw: dict[str, Any], error: _ErrorFactory) -> EgressPolicy | None:
    """The tenant's egress policy from `egress`, `egress_private_ranges` and
    `[[egress_headers]]`; None without rules. Ranges and headers need rules; a header's host
    must be one the rules allow (by name, on some port)."""
    rules_raw = raw.get("egress", [])
    if not isinstance(rules_raw, list) or not all(isinstance(r, str) for r in rules_raw):
        raise error("egress", f'egress must be a list of "HOST:PORT" strings, got {rules_raw!r}')
    rules = []
    for i, entry in enumerate(rules_raw):
        try:
            rules.append(EgressRule.parse(entry))
        except ValueError as e:
            raise error(f"egress[{i}]", f"egress[{i}]: {e}") from None
    ranges = raw.get("egress_private_ranges", [])
    if not isinstance(ranges, list) or not all(isinstance(r, str) for r in ranges):
        raise error(
            "egress_private_ranges",
            f'egress_private_ranges must be a list of "ADDRESS/BITS" strings, got {ranges!r}',
        )
    headers_raw = raw.get("egress_headers", [])
    if not isinstance(headers_raw, list) or not all(isinstance(h, dict) for h in headers_raw):
        raise error(
            "egress_headers",
            "egress_headers must be [[tenants.NAME.egress_headers]] tables with host, name "
            "and value",
        )
    headers = []
    for i, table in enumerate(headers_raw):
        where = f"egress_headers[{i}]"
        unknown = sorted(set(table) - _HEADER_KEYS)
        missing = sorted(_HEADER_KEYS - set(table))
        if unknown or missing:
            problem = f"unknown key {unknown[0]!r}" if unknown else f"{missing[0]} is missing"
            raise error(where, f"{where}: {problem} (a header is host, name and value)")
        if not all(isinstance(table[k], str) for k in _HEADER_KEYS):
            raise error(where, f"{where}: host, name and value must be strings")
        try:
            header = EgressHeader(table["host"], table["name"], table["value"])
        except ValueError as e:
            raise error(where, f"{where}: {e}") from None
        if not any(_rule_names(rule, header.host) for rule in rules):
            raise error(
                f"{where}.host",
                f"{where}.host: {header.host} is not within the tenant's egress rules "
                "(a header only goes where egress allows)",
            )
        headers.append(header)
    if not rules:
        for field in ("egress_private_ranges", "egress_headers"):
            if raw.get(field):
                raise error(field, f"{field} without egress rules has no effect: add `egress`")
        return None
    try:
        return EgressPolicy(
            rules=tuple(rules), private_ranges=tuple(ranges), headers=tuple(headers)
        )
    except ValueError as e:
        raise error("egress_private_ranges", f"egress_private_ranges: {e}") from None


def _rule_names(rule: EgressRule, host: str) -> bool:
    """Whether `rule` allows the name `host` (or, for a wildcard header, names under it)."""
    if rule.network is not None:
        return False
    if host.startswith("*."):
        return rule.host.startswith("*.") and (host == rule.host or host.endswith(rule.host[1:]))
    return rule.matches(host, rule.port)


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


def _environments(value: object, error: _ErrorFactory) -> frozenset[str]:
    """The environments the tenant may use: names as the environments file spells them
    (whether the daemon has them is its own business: an unknown one is INVALID_ARGUMENT)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise error("environments", f"environments must be a list of names, got {value!r}")
    for name in value:
        if not ENVIRONMENT_NAME.fullmatch(name):
            raise error(
                "environments",
                f"environments: {name!r} is not an environment name (lowercase letters, "
                "digits, '_' and '-', starting with a letter or digit, at most 63)",
            )
    if len(set(value)) != len(value):
        raise error("environments", "environments: a name is listed twice")
    return frozenset(value)


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
