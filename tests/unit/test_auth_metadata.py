"""The API key comes from exactly one `authorization: Bearer <key>` entry (found by tests/fuzz:
with two entries the first one won, so `[wrong, right]` failed and `[right, wrong]` passed;
a proxy checking the other entry would have let the caller choose its tenant)."""

from __future__ import annotations

import pytest

from sandboxd.errors import Unauthenticated
from sandboxd.tenants.auth import api_key


def test_one_bearer_entry_is_the_key() -> None:
    assert api_key([("user-agent", "x"), ("authorization", "Bearer k1 ")]) == "k1"
    assert api_key([("authorization", "bearer k1")]) == "k1"


def test_no_entry_is_no_key() -> None:
    assert api_key(None) is None
    assert api_key([("authorization-bin", b"\xff"), ("x-authorization", "Bearer k")]) is None


@pytest.mark.parametrize(
    "entries",
    [
        [("authorization", "Bearer k1"), ("authorization", "Bearer k2")],
        [("authorization", "Bearer k1"), ("authorization", "Bearer k1")],
        [("authorization", "Bearer k1"), ("authorization", "")],
        [("authorization", "Basic x"), ("authorization", "Bearer k1")],
    ],
)
def test_more_than_one_entry_is_refused(entries: list[tuple[str, str]]) -> None:
    with pytest.raises(Unauthenticated, match="more than one"):
        api_key(entries)


@pytest.mark.parametrize("value", ["", "Bearer", "Basic abc", "k1", b"Bearer k1"])
def test_a_malformed_entry_is_refused(value: str | bytes) -> None:
    with pytest.raises(Unauthenticated, match="Bearer <api-key>"):
        api_key([("authorization", value)])
