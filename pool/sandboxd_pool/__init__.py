"""sandboxd_pool: the embeddable engine of sandboxd.

A warm pool of pre-isolated, single-use worker processes running untrusted Python and
JavaScript. See docs/embedding.md and docs/architecture.md.
"""

from .config import Environment, PoolConfig
from .errors import (
    Cancelled,
    InvalidRequest,
    JailModeError,
    PoolClosed,
    RuntimeUnavailable,
    SandboxError,
)
from .pool import Pool
from .types import (
    CEILING_LIMITS,
    DEFAULT_LIMITS,
    ExecutionRequest,
    Limits,
    Mode,
    Outcome,
    OutputFile,
    Runtime,
    RuntimeHealth,
    Started,
    Stream,
    Usage,
    Verdict,
)
from .validation import CheckedRequest

__all__ = [
    "CEILING_LIMITS",
    "DEFAULT_LIMITS",
    "Cancelled",
    "CheckedRequest",
    "Environment",
    "ExecutionRequest",
    "InvalidRequest",
    "JailModeError",
    "Limits",
    "Mode",
    "Outcome",
    "OutputFile",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "Runtime",
    "RuntimeHealth",
    "RuntimeUnavailable",
    "SandboxError",
    "Started",
    "Stream",
    "Usage",
    "Verdict",
]
