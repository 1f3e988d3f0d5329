from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Runtime(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUNTIME_UNSPECIFIED: _ClassVar[Runtime]
    RUNTIME_PYTHON: _ClassVar[Runtime]
    RUNTIME_JAVASCRIPT: _ClassVar[Runtime]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_SCRIPT: _ClassVar[Mode]
    MODE_HANDLER: _ClassVar[Mode]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_OK: _ClassVar[Verdict]
    VERDICT_RUNTIME_ERROR: _ClassVar[Verdict]
    VERDICT_TIMEOUT: _ClassVar[Verdict]
    VERDICT_CPU_TIME_LIMIT: _ClassVar[Verdict]
    VERDICT_MEMORY_LIMIT: _ClassVar[Verdict]
    VERDICT_OUTPUT_LIMIT: _ClassVar[Verdict]
    VERDICT_SYSCALL_BLOCKED: _ClassVar[Verdict]
    VERDICT_KILLED: _ClassVar[Verdict]
    VERDICT_INTERNAL_ERROR: _ClassVar[Verdict]

class ExecutionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_STATE_UNSPECIFIED: _ClassVar[ExecutionState]
    EXECUTION_STATE_QUEUED: _ClassVar[ExecutionState]
    EXECUTION_STATE_RUNNING: _ClassVar[ExecutionState]
    EXECUTION_STATE_DONE: _ClassVar[ExecutionState]
    EXECUTION_STATE_CANCELLED: _ClassVar[ExecutionState]
RUNTIME_UNSPECIFIED: Runtime
RUNTIME_PYTHON: Runtime
RUNTIME_JAVASCRIPT: Runtime
MODE_UNSPECIFIED: Mode
MODE_SCRIPT: Mode
MODE_HANDLER: Mode
VERDICT_UNSPECIFIED: Verdict
VERDICT_OK: Verdict
VERDICT_RUNTIME_ERROR: Verdict
VERDICT_TIMEOUT: Verdict
VERDICT_CPU_TIME_LIMIT: Verdict
VERDICT_MEMORY_LIMIT: Verdict
VERDICT_OUTPUT_LIMIT: Verdict
VERDICT_SYSCALL_BLOCKED: Verdict
VERDICT_KILLED: Verdict
VERDICT_INTERNAL_ERROR: Verdict
EXECUTION_STATE_UNSPECIFIED: ExecutionState
EXECUTION_STATE_QUEUED: ExecutionState
EXECUTION_STATE_RUNNING: ExecutionState
EXECUTION_STATE_DONE: ExecutionState
EXECUTION_STATE_CANCELLED: ExecutionState

class Limits(_message.Message):
    __slots__ = ("wall_time_ms", "cpu_time_ms", "memory_bytes", "max_output_bytes", "max_processes", "tmpfs_bytes", "max_output_files", "max_output_files_bytes", "max_egress_connections", "max_egress_sent_bytes", "max_egress_received_bytes")
    WALL_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    TMPFS_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_FILES_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_FILES_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_EGRESS_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_EGRESS_SENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_EGRESS_RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    wall_time_ms: int
    cpu_time_ms: int
    memory_bytes: int
    max_output_bytes: int
    max_processes: int
    tmpfs_bytes: int
    max_output_files: int
    max_output_files_bytes: int
    max_egress_connections: int
    max_egress_sent_bytes: int
    max_egress_received_bytes: int
    def __init__(self, wall_time_ms: _Optional[int] = ..., cpu_time_ms: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., max_output_bytes: _Optional[int] = ..., max_processes: _Optional[int] = ..., tmpfs_bytes: _Optional[int] = ..., max_output_files: _Optional[int] = ..., max_output_files_bytes: _Optional[int] = ..., max_egress_connections: _Optional[int] = ..., max_egress_sent_bytes: _Optional[int] = ..., max_egress_received_bytes: _Optional[int] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("path", "content")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    path: str
    content: bytes
    def __init__(self, path: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("runtime", "code", "stdin", "args", "env", "files", "limits", "mode", "event", "idempotency_key", "labels", "environment", "egress")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    runtime: Runtime
    code: str
    stdin: bytes
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    files: _containers.RepeatedCompositeFieldContainer[File]
    limits: Limits
    mode: Mode
    event: bytes
    idempotency_key: str
    labels: _containers.ScalarMap[str, str]
    environment: str
    egress: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, runtime: _Optional[_Union[Runtime, str]] = ..., code: _Optional[str] = ..., stdin: _Optional[bytes] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., files: _Optional[_Iterable[_Union[File, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., mode: _Optional[_Union[Mode, str]] = ..., event: _Optional[bytes] = ..., idempotency_key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., environment: _Optional[str] = ..., egress: _Optional[_Iterable[str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("wall_time_us", "cpu_time_us", "peak_memory_bytes")
    WALL_TIME_US_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_US_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    wall_time_us: int
    cpu_time_us: int
    peak_memory_bytes: int
    def __init__(self, wall_time_us: _Optional[int] = ..., cpu_time_us: _Optional[int] = ..., peak_memory_bytes: _Optional[int] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("execution_id", "verdict", "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "result", "blocked_syscall", "usage", "queue_wait_us", "cold_start", "worker_boot_us", "files", "files_truncated", "egress")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDERR_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_SYSCALL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_US_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    WORKER_BOOT_US_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    FILES_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    verdict: Verdict
    exit_code: int
    signal: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    result: bytes
    blocked_syscall: str
    usage: Usage
    queue_wait_us: int
    cold_start: bool
    worker_boot_us: int
    files: _containers.RepeatedCompositeFieldContainer[File]
    files_truncated: bool
    egress: _containers.RepeatedCompositeFieldContainer[EgressEntry]
    def __init__(self, execution_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., stdout_truncated: _Optional[bool] = ..., stderr_truncated: _Optional[bool] = ..., result: _Optional[bytes] = ..., blocked_syscall: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., queue_wait_us: _Optional[int] = ..., cold_start: _Optional[bool] = ..., worker_boot_us: _Optional[int] = ..., files: _Optional[_Iterable[_Union[File, _Mapping]]] = ..., files_truncated: _Optional[bool] = ..., egress: _Optional[_Iterable[_Union[EgressEntry, _Mapping]]] = ...) -> None: ...

class EgressEntry(_message.Message):
    __slots__ = ("host", "port", "allowed", "connections", "sent_bytes", "received_bytes", "reason")
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    SENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    host: str
    port: int
    allowed: bool
    connections: int
    sent_bytes: int
    received_bytes: int
    reason: str
    def __init__(self, host: _Optional[str] = ..., port: _Optional[int] = ..., allowed: _Optional[bool] = ..., connections: _Optional[int] = ..., sent_bytes: _Optional[int] = ..., received_bytes: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ExecutionStarted(_message.Message):
    __slots__ = ("execution_id", "queue_wait_us", "cold_start")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_US_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    queue_wait_us: int
    cold_start: bool
    def __init__(self, execution_id: _Optional[str] = ..., queue_wait_us: _Optional[int] = ..., cold_start: _Optional[bool] = ...) -> None: ...

class ExecuteEvent(_message.Message):
    __slots__ = ("started", "stdout", "stderr", "response", "file")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    started: ExecutionStarted
    stdout: bytes
    stderr: bytes
    response: ExecuteResponse
    file: File
    def __init__(self, started: _Optional[_Union[ExecutionStarted, _Mapping]] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., response: _Optional[_Union[ExecuteResponse, _Mapping]] = ..., file: _Optional[_Union[File, _Mapping]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class GetExecutionRequest(_message.Message):
    __slots__ = ("execution_id", "wait_ms")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    wait_ms: int
    def __init__(self, execution_id: _Optional[str] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class Execution(_message.Message):
    __slots__ = ("execution_id", "state", "response")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    state: ExecutionState
    response: ExecuteResponse
    def __init__(self, execution_id: _Optional[str] = ..., state: _Optional[_Union[ExecutionState, str]] = ..., response: _Optional[_Union[ExecuteResponse, _Mapping]] = ...) -> None: ...

class CancelExecutionRequest(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class CancelExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ...) -> None: ...
