"""Editing the tenants file: `add_tenant` and `remove_tenant`, atomically, under a lock on its
directory. `tomllib` only reads, so they write with the small serializer below and re-load
what they are about to write before replacing the file."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from sandboxd_pool.types import Runtime

from .file import _check_name, _parse, _read, _tenant
from .model import DEFAULT_MAX_CONCURRENT_EXECUTIONS, TenantsFileError, hash_key, new_key

FILE_HEADER = """\
# sandboxd tenants file (sandboxd's docs/operations.md, "Tenants"). Managed by `sandboxd tenants add|list|remove`; it may
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
#   network_allowed = false          optional; true is refused: use egress rules instead
#   egress = ["api.example.com:443", "*.example.org:443"]
#                                    optional, default none: where the egress proxy may
#                                    connect (HOST:PORT, *.DOMAIN:PORT, ADDRESS[/BITS]:PORT)
#   egress_private_ranges = ["10.0.0.0/8"]
#                                    optional: loopback, link-local or private ranges the
#                                    proxy may connect to for this tenant (refused otherwise)
#   [[tenants.NAME.egress_headers]]  optional, repeated: a header the proxy sets on requests
#   host = "api.example.com"         to this host (exact name or *.DOMAIN; it must be within
#   name = "Authorization"           `egress`); the program never sees the value. Edit the
#   value = "Bearer ..."             file by hand: a secret does not belong on a command line
#   environments = ["data"]          optional, default none: the environments (packages the
#                                    operator built, --environments) its requests may name
#   [tenants.NAME.default_limits]    optional: used when a request leaves a limit at 0
#   [tenants.NAME.ceiling_limits]    optional: the most a request may ask for (larger
#                                    requests are clamped); at most the built-in ceilings
#
# Limit fields (integers; omit a field to use the built-in value): wall_time_ms,
# cpu_time_ms, memory_bytes, max_output_bytes (per stream), max_processes, tmpfs_bytes,
# max_output_files, max_output_files_bytes, max_egress_connections, max_egress_sent_bytes,
# max_egress_received_bytes.
"""


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
    egress: Iterable[str] | None = None,
    egress_private_ranges: Iterable[str] | None = None,
    environments: Iterable[str] | None = None,
) -> str:
    """Add a tenant with a fresh API key and return the key (it is stored only hashed).
    Egress headers (secrets) are not taken here: they are added to the file by hand.

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
    if egress:
        entry["egress"] = list(egress)
    if egress_private_ranges:
        entry["egress_private_ranges"] = list(egress_private_ranges)
    if environments is not None:
        entry["environments"] = list(environments)
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
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []  # [[tenants.NAME.KEY]] tables
    for key, value in entry.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            arrays.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"[tenants.{name}.{key}]")
        lines.extend(f"{field} = {_toml_value(value)}" for field, value in table.items())
    for key, items in arrays:
        for item in items:
            lines.append(f"[[tenants.{name}.{key}]]")
            lines.extend(f"{field} = {_toml_value(value)}" for field, value in item.items())
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
