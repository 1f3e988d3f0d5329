"""The engine's vocabulary: frozen dataclasses and enums. Units live in field names."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Runtime(enum.Enum):
    PYTHON = "python"
    JAVASCRIPT = "javascript"


class Mode(enum.Enum):
    """SCRIPT: the code runs as the main program (stdin in, stdout out). HANDLER: Lambda-style,
    the code defines `handler(event, context)` (Python) / `exports.handler` (JavaScript), which
    is called with the request's JSON `event`; its JSON return value is `Outcome.result`."""

    SCRIPT = "script"
    HANDLER = "handler"


class Stream(enum.Enum):
    """Which output stream a chunk given to `Pool.execute(on_output=...)` came from."""

    STDOUT = "stdout"
    STDERR = "stderr"


class Verdict(enum.Enum):
    OK = "OK"
    RUNTIME_ERROR = "RUNTIME_ERROR"  # the program exited non-zero
    TIMEOUT = "TIMEOUT"  # wall-clock limit
    CPU_TIME_LIMIT = "CPU_TIME_LIMIT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    SYSCALL_BLOCKED = "SYSCALL_BLOCKED"
    KILLED = "KILLED"  # any other signal
    INTERNAL_ERROR = "INTERNAL_ERROR"


@dataclass(frozen=True)
class Limits:
    """Per-execution limits. Zero means "use the pool's default" when given in a request."""

    wall_time_ms: int = 0
    cpu_time_ms: int = 0
    memory_bytes: int = 0
    max_output_bytes: int = 0  # per stream (stdout and stderr are capped separately)
    max_processes: int = 0
    tmpfs_bytes: int = 0  # /work, /tmp and /dev/shm together
    max_output_files: int = 0  # files returned from the program's out/ folder
    max_output_files_bytes: int = 0  # their total size
    # Egress through the proxy (a request with an egress policy; see sandboxd_pool/egress/):
    # connections the program opens to the proxy (and each further destination one plain-HTTP
    # connection switches to), and bytes relayed towards destinations and back from them.
    max_egress_connections: int = 0
    max_egress_sent_bytes: int = 0
    max_egress_received_bytes: int = 0

    def merged_over(self, defaults: Limits) -> Limits:
        """These limits with every zero field taken from `defaults`."""
        return Limits(
            **{
                name: getattr(self, name) or getattr(defaults, name)
                for name in self.__dataclass_fields__
            }
        )


DEFAULT_LIMITS = Limits(
    wall_time_ms=10_000,
    cpu_time_ms=10_000,
    memory_bytes=256 * 1024 * 1024,
    max_output_bytes=1024 * 1024,
    max_processes=64,
    tmpfs_bytes=64 * 1024 * 1024,
    max_output_files=100,
    max_output_files_bytes=16 * 1024 * 1024,
    max_egress_connections=16,
    max_egress_sent_bytes=16 * 1024 * 1024,
    max_egress_received_bytes=64 * 1024 * 1024,
)

CEILING_LIMITS = Limits(
    wall_time_ms=300_000,
    cpu_time_ms=300_000,
    memory_bytes=4 * 1024 * 1024 * 1024,
    max_output_bytes=64 * 1024 * 1024,
    max_processes=1024,
    tmpfs_bytes=1024 * 1024 * 1024,
    max_output_files=10_000,
    max_output_files_bytes=64 * 1024 * 1024,
    max_egress_connections=1024,
    max_egress_sent_bytes=1024 * 1024 * 1024,
    max_egress_received_bytes=1024 * 1024 * 1024,
)


def _frozen_mapping(value: Mapping[str, object] | None) -> Mapping[str, object]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class ExecutionRequest:
    runtime: Runtime
    code: str
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)  # relative paths inside the work dir
    limits: Limits = field(default_factory=Limits)
    tenant: str = "default"
    mode: Mode = Mode.SCRIPT
    event: bytes = b""  # HANDLER mode: the event as JSON (UTF-8); empty means null
    environment: str = ""  # the name of one of PoolConfig.environments; "": the bare runtime

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "env", _frozen_mapping(self.env))
        object.__setattr__(self, "files", _frozen_mapping(self.files))


@dataclass(frozen=True)
class Usage:
    wall_time_us: int = 0
    cpu_time_us: int = 0
    peak_memory_bytes: int = 0


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    exit_code: int | None = None  # None when killed by a signal
    signal: int | None = None  # the terminating signal, if any
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    blocked_syscall: str | None = None  # e.g. "ptrace" when verdict is SYSCALL_BLOCKED
    usage: Usage = field(default_factory=Usage)
    cold_start: bool = False  # no warm worker was ready; the request waited for one to boot
    queue_wait_us: int = 0
    worker_boot_us: int = 0
    execution_id: str = ""
    result: bytes = b""  # HANDLER mode: the handler's return value as JSON (UTF-8)
    # The regular files the program left under out/ in its working directory (paths relative
    # to it, sorted), within max_output_files and max_output_files_bytes.
    files: tuple[OutputFile, ...] = ()
    files_truncated: bool = False  # some file (or part of one) was left out by those limits
    # What went through the egress proxy, one entry per (destination, port, decision), in the
    # order first seen; empty when the request had no egress policy.
    egress: tuple[EgressEntry, ...] = ()


@dataclass(frozen=True)
class EgressEntry:
    """One destination the program asked the egress proxy for, and what became of it.

    `host` is the name (or address) the program asked for, `port` its port. `allowed`: the
    proxy connected (or would have, had a limit not stopped it: see `reason`); False: refused
    by the rules, the address check, or a limit before any byte went out. Bytes are those the
    proxy relayed: towards the destination (`sent_bytes`) and back (`received_bytes`); inside a
    TLS tunnel the proxy does not open, the encrypted bytes. `reason`: why it was refused or
    cut, empty when nothing was."""

    host: str
    port: int
    allowed: bool
    connections: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    reason: str = ""


@dataclass(frozen=True)
class OutputFile:
    path: str  # relative to the out/ folder, "/"-separated
    data: bytes


@dataclass(frozen=True)
class Started:
    """Given to `Pool.execute(on_start=...)` once a worker was taken, before the code is sent."""

    execution_id: str
    queue_wait_us: int
    cold_start: bool


@dataclass(frozen=True)
class RuntimeHealth:
    runtime: Runtime
    healthy: bool
    ready_workers: int
    reason: str = ""  # why it is unhealthy (last boot error), empty when healthy
    consecutive_boot_failures: int = 0
