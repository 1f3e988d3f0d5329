"""Request validation: a bad request raises InvalidRequest naming the field; nothing runs."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from .config import PoolConfig
from .errors import InvalidRequest
from .jail.policy import OUT_DIR
from .json_bounds import check_json
from .types import ExecutionRequest, Limits, Mode, Runtime

MIN_LIMITS = Limits(
    wall_time_ms=1,
    cpu_time_ms=1,
    memory_bytes=64 * 1024 * 1024,  # below this even a bare interpreter cannot start
    max_output_bytes=1,
    max_processes=4,
    tmpfs_bytes=1024 * 1024,
    max_output_files=1,
    max_output_files_bytes=1,
    max_egress_connections=1,
    max_egress_sent_bytes=1,
    max_egress_received_bytes=1,
)
MAX_PATH_BYTES = 1024
NAME_MAX = 255  # bytes of one path component (Linux)
PAGE_BYTES = 4096  # a tmpfs file takes whole pages
MAX_ARG_BYTES = 128 * 1024
MAX_ENV_ENTRIES = 1024
# A HANDLER event is checked without being parsed into objects (json_bounds.py): at most this
# many values (object keys included), and arrays and objects nested at most this deep (the
# proto says so; it keeps events within what the runtimes' parsers read).
MAX_EVENT_VALUES = 1_000_000
MAX_EVENT_DEPTH = 512


@dataclass(frozen=True)
class CheckedRequest:
    """A request `check` accepted under one pool configuration, with its effective limits.
    `Pool.execute` runs it without checking it again (under that same configuration only), so
    a caller that must refuse bad requests before spending anything on them (the daemon's
    admission) pays for the check once."""

    request: ExecutionRequest
    limits: Limits
    config: PoolConfig


def check(request: ExecutionRequest, config: PoolConfig) -> CheckedRequest:
    """`validate`, keeping what it found; InvalidRequest as `validate`."""
    return CheckedRequest(request, validate(request, config), config)


def validate(request: ExecutionRequest, config: PoolConfig) -> Limits:
    """Check the request; return its effective limits (zeros filled from the defaults)."""
    if not isinstance(request.runtime, Runtime):
        raise InvalidRequest("runtime", f"unknown runtime {request.runtime!r}")
    if request.runtime not in config.runtimes:
        raise InvalidRequest("runtime", f"runtime {request.runtime.value} is not enabled")
    if request.environment:
        environment = config.environment(request.environment)
        if environment is None:
            known = ", ".join(sorted(e.name for e in config.environments)) or "none"
            raise InvalidRequest(
                "environment", f"unknown environment {request.environment!r} (there are: {known})"
            )
        if environment.runtime is not request.runtime:
            raise InvalidRequest(
                "environment",
                f"environment {environment.name} is for {environment.runtime.value}, not "
                f"{request.runtime.value}",
            )
    if not isinstance(request.code, str):
        raise InvalidRequest("code", "must be a string")
    try:
        code_bytes = len(request.code.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidRequest("code", f"is not encodable as UTF-8 ({e.reason})") from None
    if code_bytes > config.max_code_bytes:
        raise InvalidRequest("code", f"{code_bytes} bytes exceeds {config.max_code_bytes}")
    if not isinstance(request.stdin, bytes | bytearray | memoryview):
        raise InvalidRequest("stdin", "must be bytes")
    if len(request.stdin) > config.max_stdin_bytes:
        raise InvalidRequest(
            "stdin", f"{len(request.stdin)} bytes exceeds {config.max_stdin_bytes}"
        )
    _check_mode_and_event(request, config)
    for i, arg in enumerate(request.args):
        _check_text(f"args[{i}]", arg, MAX_ARG_BYTES)
    if len(request.env) > MAX_ENV_ENTRIES:
        raise InvalidRequest("env", f"more than {MAX_ENV_ENTRIES} entries")
    for key, value in request.env.items():
        _check_text(f"env[{key!r}]", key, MAX_ARG_BYTES)
        if not key or "=" in key:
            raise InvalidRequest(f"env[{key!r}]", "a name must be non-empty and contain no '='")
        _check_text(f"env[{key!r}]", value, MAX_ARG_BYTES)
    _check_files(request, config)
    limits = _check_limits(request.limits, config)
    _check_space(request, limits)
    return limits


def _check_mode_and_event(request: ExecutionRequest, config: PoolConfig) -> None:
    if not isinstance(request.mode, Mode):
        raise InvalidRequest("mode", f"unknown mode {request.mode!r}")
    if not isinstance(request.event, bytes | bytearray | memoryview):
        raise InvalidRequest("event", "must be bytes")
    if request.mode is Mode.SCRIPT:
        if len(request.event):
            raise InvalidRequest("event", "is only for HANDLER mode (SCRIPT mode reads stdin)")
        return
    # The event travels in the request frame and is held by the worker: it is bounded like
    # stdin (each on its own: max_stdin_bytes).
    if len(request.event) > config.max_stdin_bytes:
        raise InvalidRequest(
            "event", f"{len(request.event)} bytes exceeds {config.max_stdin_bytes}"
        )
    if not len(request.event):
        return  # null
    try:
        check_json(request.event, max_values=MAX_EVENT_VALUES, max_depth=MAX_EVENT_DEPTH)
    except ValueError as e:
        raise InvalidRequest("event", str(e)) from None


def _check_text(field: str, value: object, max_bytes: int) -> None:
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    if "\x00" in value:
        raise InvalidRequest(field, "contains a NUL character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest(field, "is not encodable as UTF-8") from None
    if size > max_bytes:
        raise InvalidRequest(field, f"{size} bytes exceeds {max_bytes}")


def _check_files(request: ExecutionRequest, config: PoolConfig) -> None:
    if len(request.files) > config.max_files:
        raise InvalidRequest("files", f"more than {config.max_files} files")
    total = 0
    main = "main.py" if request.runtime is Runtime.PYTHON else "main.js"
    for path, data in request.files.items():
        field = f"files[{path!r}]"
        _check_text(field, path, MAX_PATH_BYTES)
        if not path or path.startswith("/"):
            raise InvalidRequest(field, "must be a non-empty relative path")
        normalized = posixpath.normpath(path)
        parts = path.split("/")
        # `..data` and `...` are ordinary names: only a `..` component leaves the work dir.
        if ".." in parts or normalized.split("/")[0] == ".." or normalized in (".", ""):
            raise InvalidRequest(field, "must not contain '..' or name the work dir itself")
        if any(part == "" for part in parts[:-1]) or path.endswith("/"):
            raise InvalidRequest(field, "must name a file (no empty path components)")
        if any(len(part.encode()) > NAME_MAX for part in parts):
            raise InvalidRequest(field, f"a path component is at most {NAME_MAX} bytes")
        if normalized == main:
            raise InvalidRequest(field, f"{main} is where the code is written")
        if normalized == OUT_DIR:
            raise InvalidRequest(field, f"{OUT_DIR} is the output folder (files may go in it)")
        if not isinstance(data, bytes | bytearray):
            raise InvalidRequest(field, "content must be bytes")
        total += len(data)
    if total > config.max_files_bytes:
        raise InvalidRequest("files", f"{total} bytes in all exceeds {config.max_files_bytes}")
    _check_file_tree(request.files, main)


def _check_file_tree(files: Mapping[str, bytes], main: str) -> None:
    """No two paths name the same file (`a/./b`, `a/b`) and no file is another's directory
    (`a`, `a/b`; `main.py/x`): the worker could not write them all."""
    taken = {main: main}  # normalized file path -> the path as given
    directories: set[str] = set()
    for path in files:
        field = f"files[{path!r}]"
        normalized = posixpath.normpath(path)
        if normalized in taken:
            raise InvalidRequest(field, f"names the same file as {taken[normalized]!r}")
        if normalized in directories:
            raise InvalidRequest(field, "is the directory of another file")
        parents = _parents(normalized)
        for parent in parents:
            if parent in taken:
                raise InvalidRequest(field, f"puts a file inside {taken[parent]!r}, a file")
        taken[normalized] = path
        directories.update(parents)


def _parents(normalized: str) -> list[str]:
    parts = normalized.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _check_space(request: ExecutionRequest, limits: Limits) -> None:
    """The code and the files must fit the work dir's tmpfs, or the worker cannot write them."""
    sizes = [len(request.code.encode("utf-8")), *(len(d) for d in request.files.values())]
    needed = sum(-(-size // PAGE_BYTES) * PAGE_BYTES for size in sizes)
    if needed > limits.tmpfs_bytes:
        raise InvalidRequest(
            "limits.tmpfs_bytes",
            f"{limits.tmpfs_bytes} is less than the {needed} bytes the code and files take "
            f"(in {PAGE_BYTES}-byte pages)",
        )


def _check_limits(requested: Limits, config: PoolConfig) -> Limits:
    limits = config.limits_for(requested)
    for name in Limits.__dataclass_fields__:
        value = getattr(requested, name)
        if not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"limits.{name}", "must be a non-negative integer")
        effective = getattr(limits, name)
        ceiling = getattr(config.ceiling_limits, name)
        if effective > ceiling:
            raise InvalidRequest(f"limits.{name}", f"{effective} exceeds the ceiling {ceiling}")
        minimum = getattr(MIN_LIMITS, name)
        if effective < minimum:
            raise InvalidRequest(f"limits.{name}", f"{effective} is below the minimum {minimum}")
    return limits
