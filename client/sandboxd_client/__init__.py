"""Client library for the sandboxd gRPC service (`sandboxd.v1.Sandbox`).

    from sandboxd_client import Client
    with Client("127.0.0.1:50051", api_key="sbx_...") as c:
        r = c.execute("python", "print('hi')")
        assert r.ok and r.stdout == b"hi\\n"
        done = c.wait(c.submit("python", "print('later')"), timeout_s=60)

Results are plain dataclasses (no protobuf); request failures are typed exceptions (see
`sandboxd_client.errors`). Installs with grpcio and protobuf only. The wire contract is
proto/sandboxd/v1/sandbox.proto; the generated stubs are in `sandboxd_client.proto`.
"""

from ._options import NO_RETRY, RetryPolicy, Tls
from .aio import AsyncClient
from .client import Client
from .errors import (
    Cancelled,
    DeadlineExceeded,
    FieldViolation,
    InternalError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    QuotaViolation,
    SandboxdError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from .types import (
    EgressEntry,
    ExecuteResult,
    Execution,
    ExecutionState,
    Limits,
    Mode,
    Output,
    OutputFile,
    Runtime,
    Started,
    StreamEvent,
    Usage,
    Verdict,
)

__version__ = "0.1.0"

__all__ = [
    "NO_RETRY",
    "AsyncClient",
    "Cancelled",
    "Client",
    "DeadlineExceeded",
    "EgressEntry",
    "ExecuteResult",
    "Execution",
    "ExecutionState",
    "FieldViolation",
    "InternalError",
    "InvalidRequest",
    "Limits",
    "Mode",
    "NotFound",
    "Output",
    "OutputFile",
    "PermissionDenied",
    "QuotaExceeded",
    "QuotaViolation",
    "RetryPolicy",
    "Runtime",
    "SandboxdError",
    "Started",
    "StreamEvent",
    "Tls",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Usage",
    "Verdict",
    "__version__",
]
