"""Exceptions of the client library: one per gRPC status the service returns (docs/api.md, "Errors").

A program that fails is NOT an exception: it is an ExecuteResult with a Verdict. These are
for the request itself.

SandboxdError                  .code (grpc.StatusCode name), .message
├── InvalidRequest             .violations: tuple[FieldViolation, ...]     INVALID_ARGUMENT
├── Unauthenticated            missing or unknown API key                   UNAUTHENTICATED
├── PermissionDenied           runtime or feature not allowed for the tenant PERMISSION_DENIED
├── QuotaExceeded              .retry_after_s, .violations                  RESOURCE_EXHAUSTED
├── Unavailable                draining, runtime unhealthy, unreachable     UNAVAILABLE
├── DeadlineExceeded           the call's deadline passed                   DEADLINE_EXCEEDED
├── Cancelled                  the call was cancelled                       CANCELLED
├── NotFound                   unknown execution id                         NOT_FOUND
├── Unimplemented              the server does not offer this RPC           UNIMPLEMENTED
└── InternalError              a server bug; .message holds a request id    INTERNAL and others
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    subject: str
    description: str


class SandboxdError(Exception):
    code = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(SandboxdError):
    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations


class Unauthenticated(SandboxdError):
    code = "UNAUTHENTICATED"


class PermissionDenied(SandboxdError):
    code = "PERMISSION_DENIED"


class QuotaExceeded(SandboxdError):
    code = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        retry_after_s: float | None = None,
        violations: tuple[QuotaViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.violations = violations


class Unavailable(SandboxdError):
    code = "UNAVAILABLE"


class DeadlineExceeded(SandboxdError):
    code = "DEADLINE_EXCEEDED"


class Cancelled(SandboxdError):
    code = "CANCELLED"


class NotFound(SandboxdError):
    code = "NOT_FOUND"


class Unimplemented(SandboxdError):
    code = "UNIMPLEMENTED"


class InternalError(SandboxdError):
    code = "INTERNAL"
