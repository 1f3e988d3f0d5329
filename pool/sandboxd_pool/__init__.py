"""sandboxd_pool: the embeddable engine of sandboxd.

A warm pool of pre-isolated, single-use worker processes running untrusted Python and
JavaScript. See README.md ("Embedding the pool") and ../shared DESIGN.md.
"""

from .config import PoolConfig
from .errors import InvalidRequest, PoolClosed, RuntimeUnavailable, SandboxError
from .pool import Pool
from .types import (
    CEILING_LIMITS,
    DEFAULT_LIMITS,
    ExecutionRequest,
    Limits,
    Outcome,
    Runtime,
    RuntimeHealth,
    Usage,
    Verdict,
)

__all__ = [
    "CEILING_LIMITS",
    "DEFAULT_LIMITS",
    "ExecutionRequest",
    "InvalidRequest",
    "Limits",
    "Outcome",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "Runtime",
    "RuntimeHealth",
    "RuntimeUnavailable",
    "SandboxError",
    "Usage",
    "Verdict",
]
