"""One admission path (sandboxd/api/admission.py): Execute, ExecuteStream and Submit refuse an
invalid request before it spends quota, so it costs its tenant neither a rate token nor a
concurrency slot. Through a real daemon (port 0); each test has a positive control showing
that the quota it looks at is there and enforced."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from sandboxd_client import (
    NO_RETRY,
    Client,
    InvalidRequest,
    QuotaExceeded,
    Started,
    Verdict,
)

from .daemon import Daemon, start, tenants_file

BAD_ENV = {"A=B": "1"}  # a name with '=': the engine's check refuses it (field env['A=B'])
HOLD_S = 30  # how long the slot holder sleeps; it is cancelled once the test is done


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, dict[str, str]]]:
    path = str(tmp_path_factory.mktemp("admission") / "tenants.toml")
    keys = tenants_file(
        path,
        {
            # one execution per 1,000 s: one token at start, none after it is spent
            "metered": {"max_executions_per_second": 0.001},
            "single": {"max_concurrent_executions": 1},
        },
    )
    d = start(["--tenants", path])
    yield d, keys
    assert d.stop() == 0, "".join(d.raw_stderr[-20:])


def invalid_calls(client: Client) -> dict[str, Callable[[], object]]:
    """The three admitted RPCs, each with a request the engine's check refuses."""
    return {
        "Execute": lambda: client.execute("python", "print(1)", env=BAD_ENV, timeout_s=60),
        "ExecuteStream": lambda: list(
            client.stream("python", "print(1)", env=BAD_ENV, timeout_s=60)
        ),
        "Submit": lambda: client.submit("python", "print(1)", env=BAD_ENV, timeout_s=60),
    }


def refused_as_invalid(call: Callable[[], object]) -> None:
    with pytest.raises(InvalidRequest) as info:
        call()
    assert [v.field for v in info.value.violations] == ["env['A=B']"], info.value


def test_an_invalid_request_spends_no_rate_token(daemon: tuple[Daemon, dict[str, str]]) -> None:
    """The tenant has one token. Invalid Execute, ExecuteStream and Submit (twice each) are
    INVALID_ARGUMENT and leave it: the valid Execute after them runs, and only the next one
    is refused by the rate quota."""
    d, keys = daemon
    with Client(d.address, api_key=keys["metered"], retry=NO_RETRY) as client:
        for _ in range(2):
            for call in invalid_calls(client).values():
                refused_as_invalid(call)
        result = client.execute("python", "print('ran')", timeout_s=60)
        assert result.verdict is Verdict.OK and result.stdout == b"ran\n"
        with pytest.raises(QuotaExceeded) as info:
            client.execute("python", "print('too soon')", timeout_s=60)
        assert [v.subject for v in info.value.violations] == [
            "tenant:metered:executions_per_second"
        ]


def test_an_invalid_request_needs_no_concurrency_slot(
    daemon: tuple[Daemon, dict[str, str]],
) -> None:
    """The tenant's one slot is held by a running execution. A valid Execute is refused for
    the slot (RESOURCE_EXHAUSTED); invalid Execute, ExecuteStream and Submit are
    INVALID_ARGUMENT: they were refused before any slot was asked for. Once the holder is
    cancelled, the slot is free again (nothing the invalid calls did kept it)."""
    d, keys = daemon
    with (
        Client(d.address, api_key=keys["single"], retry=NO_RETRY) as holder,
        Client(d.address, api_key=keys["single"], retry=NO_RETRY) as client,
    ):
        events = holder.stream("python", f"import time; time.sleep({HOLD_S})", timeout_s=120)
        try:
            assert isinstance(next(events), Started)
            with pytest.raises(QuotaExceeded) as info:
                client.execute("python", "print(1)", timeout_s=60)
            assert [v.subject for v in info.value.violations] == [
                "tenant:single:concurrent_executions"
            ]
            for call in invalid_calls(client).values():
                refused_as_invalid(call)
        finally:
            events.close()  # cancels the stream: the holder's worker is killed
        deadline = time.monotonic() + HOLD_S
        while True:
            try:
                result = client.execute("python", "print('free')", timeout_s=60)
                break
            except QuotaExceeded:  # the cancel is still on its way to the server
                assert time.monotonic() < deadline, "the slot was never given back"
                time.sleep(0.1)
        assert result.verdict is Verdict.OK and result.stdout == b"free\n"
