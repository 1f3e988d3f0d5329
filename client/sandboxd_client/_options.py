"""Connection options shared by Client and AsyncClient: TLS, retries, metadata, channel args."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from . import errors
from .types import Mode, Runtime


@dataclass(frozen=True)
class Tls:
    """TLS for the channel. With no root certificates the system's trust store is used."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None  # client certificate (mutual TLS), PEM
    private_key: bytes | None = None
    server_name_override: str | None = None  # e.g. a test certificate's host name


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter, for UNAVAILABLE only.

    UNAVAILABLE means the node is draining, the runtime is unhealthy or the server cannot be
    reached: either nothing ran, or (a connection lost mid-call) the code ran in a sandbox with
    no network and a throw-away filesystem, which a second run cannot affect. Nothing else is
    retried: not quota errors (the caller decides, see QuotaExceeded.retry_after_s), not
    deadlines, not cancellations. A stream is retried only before its first event. Submit is
    retried only with an idempotency key: without one, a retried Submit whose first answer
    was lost would queue a second execution that the caller never hears of."""

    max_attempts: int = 3  # 1 disables retries
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def delay_s(self, attempt: int) -> float:
        """Sleep before retry number `attempt` (1-based)."""
        return random.uniform(
            0, min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))
        )


NO_RETRY = RetryPolicy(max_attempts=1)

# GetExecution: the server long-polls at most 30 s per call (sandbox.proto); `wait()` asks
# for that much per call, with this much on top for the call's deadline, and pauses this
# long before asking again when the server answered early without a final state.
MAX_WAIT_MS = 30_000
WAIT_CALL_MARGIN_S = 5.0
EARLY_ANSWER_PAUSE_S = 0.2
DEFAULT_RETRY = RetryPolicy()

# The server bounds what it accepts and sends (64 MiB by default); the client does not add a
# second, smaller limit.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)


def credentials(tls: Tls | bool | None) -> grpc.ChannelCredentials | None:
    if not tls:
        return None
    t = tls if isinstance(tls, Tls) else Tls()
    return grpc.ssl_channel_credentials(
        root_certificates=t.root_certificates,
        private_key=t.private_key,
        certificate_chain=t.certificate_chain,
    )


def channel_options(
    tls: Tls | bool | None, extra: Sequence[tuple[str, Any]]
) -> list[tuple[str, Any]]:
    options = list(CHANNEL_OPTIONS)
    if isinstance(tls, Tls) and tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", tls.server_name_override))
    options.extend(extra)
    return options


def metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def retryable(e: errors.SandboxdError) -> bool:
    return isinstance(e, errors.Unavailable)


def wait_ms(remaining_s: float | None) -> int:
    """The long-poll to ask for when `remaining_s` (None: no limit) is left to wait."""
    if remaining_s is None:
        return MAX_WAIT_MS
    return max(0, min(MAX_WAIT_MS, int(remaining_s * 1000)))


def handler_call(
    handler_code: str, event: Any, runtime: Runtime | str, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The execute() arguments of an invoke()."""
    return {
        "runtime": runtime,
        "code": handler_code,
        "mode": Mode.HANDLER,
        "event": json.dumps(event).encode(),
        **kwargs,
    }
