"""Errors the engine raises. User code failing never raises: it is an Outcome with a Verdict.

SandboxError
├── InvalidRequest       the request itself is bad; `.field` names the offending field
├── PoolClosed           execute() after close() (or while draining)
├── Cancelled            the cancel event was set while the request waited for a worker
├── RuntimeUnavailable   the runtime is unhealthy (boot keeps failing) or no worker in time
└── JailModeError        Pool() at start: the jail mode cannot work here (the message says
                         what the operator must grant: a subuid line, the uidmap package)
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error the engine raises."""


class InvalidRequest(SandboxError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PoolClosed(SandboxError):
    pass


class Cancelled(SandboxError):
    """execute(cancel=...) was cancelled before the code started (no worker was used)."""


class RuntimeUnavailable(SandboxError):
    def __init__(self, runtime: str, reason: str) -> None:
        super().__init__(f"runtime {runtime} unavailable: {reason}")
        self.runtime = runtime
        self.reason = reason


class JailModeError(SandboxError):
    """The configured or detected jail mode cannot work on this machine (raised by Pool())."""
