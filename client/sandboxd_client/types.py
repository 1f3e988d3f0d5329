"""The client's public types: frozen dataclasses and enums, no protobuf. Units in field names."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any


class Runtime(enum.Enum):
    PYTHON = "python"
    JAVASCRIPT = "javascript"


class Mode(enum.Enum):
    SCRIPT = "script"  # stdin in, stdout/stderr out
    HANDLER = "handler"  # Lambda-style handler(event, context); JSON event in, JSON result out


class Verdict(enum.Enum):
    """How an execution ended; decided by the server from kernel facts."""

    OK = "OK"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    TIMEOUT = "TIMEOUT"
    CPU_TIME_LIMIT = "CPU_TIME_LIMIT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    SYSCALL_BLOCKED = "SYSCALL_BLOCKED"
    KILLED = "KILLED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


@dataclass(frozen=True)
class Limits:
    """Per-execution limits; 0 means the tenant's default. Values above the tenant's ceiling
    are clamped by the server."""

    wall_time_ms: int = 0
    cpu_time_ms: int = 0
    memory_bytes: int = 0
    max_output_bytes: int = 0  # per stream
    max_processes: int = 0
    tmpfs_bytes: int = 0
    max_output_files: int = 0  # files returned from the program's out/ folder
    max_output_files_bytes: int = 0  # their contents together
    # Egress through the proxy (a tenant with egress rules): connections, bytes each way.
    max_egress_connections: int = 0
    max_egress_sent_bytes: int = 0
    max_egress_received_bytes: int = 0


@dataclass(frozen=True)
class EgressEntry:
    """One destination the program asked the egress proxy for (ExecuteResponse.egress)."""

    host: str
    port: int
    allowed: bool  # False: refused before any byte went out (`reason` says why)
    connections: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    reason: str = ""  # why it was refused or cut; empty when nothing was


@dataclass(frozen=True)
class Usage:
    wall_time_us: int = 0
    cpu_time_us: int = 0
    peak_memory_bytes: int = 0


@dataclass(frozen=True)
class OutputFile:
    """A file the program left in its output folder (`out/` in its working directory): in
    `ExecuteResult.files`, and as a stream event before the final result."""

    path: str  # relative to out/, "/"-separated ("chart.png", "tables/a.csv")
    data: bytes


@dataclass(frozen=True)
class ExecuteResult:
    """The outcome of one execution. User code failing is a verdict here, never an exception."""

    execution_id: str
    verdict: Verdict
    exit_code: int | None = None  # set when the program exited normally
    signal: int | None = None  # set when a signal terminated it
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    result: bytes = b""  # HANDLER mode: the handler's return value, JSON
    blocked_syscall: str = ""
    usage: Usage = Usage()
    queue_wait_us: int = 0
    cold_start: bool = False
    worker_boot_us: int = 0
    # The regular files the program left under out/, in path order (empty in a stream's
    # final result: they came as OutputFile events), and whether the limits left some out.
    files: tuple[OutputFile, ...] = ()
    files_truncated: bool = False
    egress: tuple[EgressEntry, ...] = ()  # what went through the egress proxy

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def result_value(self) -> Any:
        """HANDLER mode: the handler's return value, decoded from JSON (None when absent)."""
        return json.loads(self.result) if self.result else None


@dataclass(frozen=True)
class Started:
    """First event of a stream: a worker took the request."""

    execution_id: str
    queue_wait_us: int
    cold_start: bool


@dataclass(frozen=True)
class Output:
    """A chunk of the program's output, in the order produced."""

    stream: str  # "stdout" or "stderr"
    data: bytes


StreamEvent = Started | Output | OutputFile | ExecuteResult


class ExecutionState(enum.Enum):
    """Lifecycle of an asynchronous execution (Client.submit)."""

    QUEUED = "QUEUED"  # accepted, waiting for a worker
    RUNNING = "RUNNING"  # running in a worker
    DONE = "DONE"  # finished (whatever its verdict): `Execution.result` is set
    CANCELLED = "CANCELLED"  # cancelled before it started (or the node drained); nothing ran

    @property
    def finished(self) -> bool:
        return self in (ExecutionState.DONE, ExecutionState.CANCELLED)


@dataclass(frozen=True)
class Execution:
    """An asynchronous execution as the server reports it (Client.get_execution)."""

    execution_id: str
    state: ExecutionState
    result: ExecuteResult | None = None  # set exactly when state is DONE

    @property
    def finished(self) -> bool:
        """DONE or CANCELLED: the state will not change any more."""
        return self.state.finished
