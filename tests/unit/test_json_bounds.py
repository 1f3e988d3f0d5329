"""json_bounds.check_json: accepts exactly what strict `json.loads` accepts (within the bounds),
counts values exactly, and never builds the value."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandboxd_pool.json_bounds import MAX_INTEGER_DIGITS, WINDOW_BYTES, check_json

UNBOUNDED = {"max_values": 10**12, "max_depth": 10**6}


def _reject(name: str) -> object:
    raise ValueError(name)


def loads_accepts(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8"), parse_constant=_reject)
    except (ValueError, RecursionError):
        return False
    return True


def accepts(data: bytes, **bounds: int) -> bool:
    try:
        check_json(data, **{**UNBOUNDED, **bounds})
    except ValueError:
        return False
    return True


def values_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(values_of(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(1 + values_of(v) for v in value.values())
    return 1


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=300),
    st.sampled_from(["a,b", "k:v", "[", "{}", "\\", '"', "\x00", "\u2028", "é" * 300]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=40,
)
separators = st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")])
MUTATION_BYTES = b'[]{},:"\\ \t\n-+0123456789.eEtrufalsnx\x00\x1f\x7f\xc3\xa9\xff'


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    value = draw(json_values)
    data = bytearray(
        json.dumps(value, separators=draw(separators), ensure_ascii=draw(st.booleans())).encode()
    )
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 2))
        if op == 0 and data:
            del data[min(at, len(data) - 1)]
        elif op == 1:
            data.insert(at, draw(st.sampled_from(MUTATION_BYTES)))
        elif data:
            data[min(at, len(data) - 1)] = draw(st.sampled_from(MUTATION_BYTES))
    return bytes(data)


class TestSameAsJsonLoads:
    @settings(max_examples=500, derandomize=True, database=None)
    @given(json_values, separators)
    def test_valid_json_is_accepted_with_its_exact_value_count_and_depth(
        self, value: Any, sep: tuple[str, str]
    ) -> None:
        data = json.dumps(value, separators=sep).encode()
        count, depth = values_of(value), depth_of(value)
        check_json(data, max_values=count, max_depth=max(depth, 1))
        with pytest.raises(ValueError, match=f"has more than {count - 1} values"):
            check_json(data, max_values=count - 1, max_depth=10**6)
        if depth:
            with pytest.raises(ValueError, match=f"deeper than {depth - 1}"):
                check_json(data, max_values=10**9, max_depth=depth - 1)

    @settings(
        max_examples=1000,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(mutated())
    def test_mutations_are_accepted_exactly_when_json_loads_accepts_them(self, data: bytes) -> None:
        assert accepts(data) == loads_accepts(data), data

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b" ",
            b"NaN",
            b"-Infinity",
            b"[1,]",
            b"[,1]",
            b'{"a":1,}',
            b'{"a" 1}',
            b"{1:2}",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"-",
            b"+1",
            b"tru",
            b"nul",
            b"[1 2]",
            b'"\x01"',
            b'"\\x"',
            b'"\\u12"',
            b'"abc',
            b"[",
            b"]",
            b"1 1",
            b"\xef\xbb\xbf1",
            b"\xff",
            b'"\xed\xa0\x80"',
            b"[" * 3 + b"]" * 2,
        ],
    )
    def test_not_json(self, data: bytes) -> None:
        assert not loads_accepts(data)
        assert not accepts(data)

    @pytest.mark.parametrize(
        "data",
        [b"0", b"-0.0e+5", b"1e999", b' "\\ud800" ', b"\n[\t]\r", b"{}", b'{"":{"":[]}}', b'"\\/"'],
    )
    def test_json(self, data: bytes) -> None:
        assert loads_accepts(data)
        assert accepts(data)


class TestBounds:
    def test_an_integer_python_cannot_read_is_refused_a_float_is_not(self) -> None:
        digits = b"7" * (MAX_INTEGER_DIGITS + 1)
        assert not loads_accepts(digits)
        with pytest.raises(ValueError, match="integer of more than"):
            check_json(digits, **UNBOUNDED)
        check_json(digits + b".5", **UNBOUNDED)
        check_json(b"7" * MAX_INTEGER_DIGITS, **UNBOUNDED)

    def test_a_number_longer_than_a_window_is_refused(self) -> None:
        with pytest.raises(ValueError, match="number longer than"):
            check_json(b"1." + b"5" * WINDOW_BYTES, **UNBOUNDED)

    def test_depth_counts_empty_containers(self) -> None:
        check_json(b"[[[]]]", max_values=3, max_depth=3)
        with pytest.raises(ValueError, match="deeper than 2"):
            check_json(b"[[[]]]", max_values=3, max_depth=2)

    @pytest.mark.parametrize("depth", [5_000, 100_000])
    def test_deep_nesting_is_a_value_error_not_a_recursion_error(self, depth: int) -> None:
        with pytest.raises(ValueError, match="deeper than 512"):
            check_json(b"[" * depth + b"]" * depth, max_values=10**9, max_depth=512)
        with pytest.raises(ValueError, match="deeper than 512"):
            check_json(b'{"a":' * depth + b"1" + b"}" * depth, max_values=10**9, max_depth=512)


class TestWindows:
    """Tokens that cross the WINDOW_BYTES steps."""

    @pytest.mark.parametrize("shift", range(-7, 8))
    def test_strings_escapes_and_whitespace_across_a_window_edge(self, shift: int) -> None:
        pad = WINDOW_BYTES + shift
        for data in (
            b'"' + b"a" * pad + b'\\u00e9"',
            b'"' + b"a" * pad + b'\\n"',
            b'["' + "é".encode() * (pad // 2) + b'"]',
            b" " * pad + b"[1]" + b" " * pad,
            b'"' + b"\\n" * (pad // 2) + b'"',
            b"[" + b"1," * (pad // 2) + b'"x,y",' + b"2," * pad + b"3]",
            b'{"k":' + b"[0]," * (pad // 4) + b"1}",
        ):
            assert accepts(data) == loads_accepts(data)
            count = values_of(json.loads(data)) if loads_accepts(data) else 0
            if count:
                check_json(data, max_values=count, max_depth=3)
                with pytest.raises(ValueError, match="values"):
                    check_json(data, max_values=count - 1, max_depth=3)

    def test_a_control_character_after_a_window_of_text(self) -> None:
        data = b'"' + b"a" * (3 * WINDOW_BYTES) + b'\x01"'
        with pytest.raises(ValueError, match="control character"):
            check_json(data, **UNBOUNDED)


class TestNothingIsBuilt:
    def test_the_amplification_payload_is_refused_in_bounded_memory(self) -> None:
        # 64 MiB of `[[],[],...]`: json.loads builds 22 million lists (+1.8 GB). The check
        # stops at the bound and allocates nothing that grows with the input.
        data = b"[" + b"[]," * 22_369_000 + b"[]]"
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match="has more than 1000000 values"):
                check_json(data, max_values=1_000_000, max_depth=512)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024, peak

    def test_a_large_valid_document_is_checked_in_bounded_memory(self) -> None:
        data = json.dumps([{"id": i, "name": f"n{i}", "tags": ["a", "b"]} for i in range(50_000)])
        raw = data.encode()
        tracemalloc.start()
        try:
            check_json(raw, max_values=10**6, max_depth=8)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024, peak
