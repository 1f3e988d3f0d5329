"""Errors the daemon raises about a request (the engine's are in sandboxd_pool.errors).

Every exception a servicer method lets escape is translated to a gRPC status in exactly one
place, `api/status.py`:

    sandboxd_pool.InvalidRequest(field)      INVALID_ARGUMENT + google.rpc.BadRequest
    Unauthenticated                          UNAUTHENTICATED
    PermissionDenied                         PERMISSION_DENIED
    QuotaExceeded(subject, retry_after_s)    RESOURCE_EXHAUSTED + QuotaFailure + RetryInfo
    Unavailable, sandboxd_pool.PoolClosed,
      sandboxd_pool.RuntimeUnavailable       UNAVAILABLE
    sandboxd_pool.errors.Cancelled           CANCELLED
    NotFound                                 NOT_FOUND (unknown, expired or another tenant's
                                             execution id: one message for all three)
    Unimplemented                            UNIMPLEMENTED
    anything else                            INTERNAL (the message is a request id; the log
                                             has the traceback under the same id)
"""

from __future__ import annotations


class RequestError(Exception):
    """Base of the daemon's request errors; the message is safe to send to the client."""


class Unauthenticated(RequestError):
    pass


class PermissionDenied(RequestError):
    pass


class QuotaExceeded(RequestError):
    def __init__(self, subject: str, description: str, retry_after_s: float) -> None:
        super().__init__(description)
        self.subject = subject
        self.description = description
        self.retry_after_s = retry_after_s


class Unavailable(RequestError):
    pass


class NotFound(RequestError):
    pass


class Unimplemented(RequestError):
    pass
