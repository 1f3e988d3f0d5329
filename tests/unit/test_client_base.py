"""What Client and AsyncClient share (sandboxd_client/_base.py): the retry decision and the
steps of wait(), pure logic."""

from __future__ import annotations

import pytest

from sandboxd_client import (
    NO_RETRY,
    DeadlineExceeded,
    Execution,
    ExecutionState,
    InvalidRequest,
    RetryPolicy,
    Unavailable,
)
from sandboxd_client._base import BaseClient, WaitLoop
from sandboxd_client._options import EARLY_ANSWER_PAUSE_S, MAX_WAIT_MS, WAIT_CALL_MARGIN_S

RUNNING = Execution("e" * 32, ExecutionState.RUNNING)
DONE = Execution("e" * 32, ExecutionState.DONE)


def base(retry: RetryPolicy) -> BaseClient:
    return BaseClient(api_key="sbx_k", tls=None, retry=retry, channel_options=())


def test_only_unavailable_is_retried_and_only_within_the_attempts() -> None:
    client = base(RetryPolicy(max_attempts=3, initial_backoff_s=0.05, max_backoff_s=1.0))
    assert client._metadata == (("authorization", "Bearer sbx_k"),)
    unavailable = Unavailable("draining")
    assert 0 <= client._backoff_s(unavailable, 1) <= 0.05
    assert 0 <= client._backoff_s(unavailable, 2) <= 0.1
    with pytest.raises(Unavailable):
        client._backoff_s(unavailable, 3)  # the third attempt was the last
    with pytest.raises(Unavailable):
        client._backoff_s(unavailable, 1, retry=False)  # a Submit without a key, a stream
    with pytest.raises(InvalidRequest):
        client._backoff_s(InvalidRequest("bad"), 1)
    with pytest.raises(Unavailable):
        base(NO_RETRY)._backoff_s(unavailable, 1)


def test_wait_asks_for_the_longest_poll_without_a_timeout_and_returns_a_final_state() -> None:
    loop = WaitLoop("e" * 32, None)
    assert loop.next_poll() == (MAX_WAIT_MS, MAX_WAIT_MS / 1000 + WAIT_CALL_MARGIN_S)
    assert loop.pause_s(DONE) is None


def test_an_early_answer_without_a_final_state_pauses_before_the_next_poll() -> None:
    loop = WaitLoop("e" * 32, None)
    loop.next_poll()
    assert loop.pause_s(RUNNING) == EARLY_ANSWER_PAUSE_S  # answered long before 30 s


def test_wait_stops_at_its_timeout() -> None:
    loop = WaitLoop("e" * 32, 0.0)
    wait_ms, call_timeout_s = loop.next_poll()
    assert wait_ms == 0 and call_timeout_s == WAIT_CALL_MARGIN_S
    with pytest.raises(DeadlineExceeded) as info:
        loop.pause_s(RUNNING)
    assert str(info.value) == f"execution {'e' * 32} is still RUNNING after 0 s"
    assert loop.pause_s(DONE) is None  # a final state is returned even then
