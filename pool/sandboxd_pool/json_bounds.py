"""Bounded JSON validation that never builds the value.

`json.loads` turns every value into a Python object: `[[],[],...]` of 64 MiB becomes 22
million lists (+1.8 GB) in one C call that holds the GIL for seconds. `check_json` answers
only "is this strict JSON (RFC 8259) within these bounds?" with memory independent of the
input (a stack of at most `max_depth` bytes) and in steps of at most WINDOW_BYTES of regex
work, so other threads get the GIL between steps:

- UTF-8 is checked by an incremental decoder, one window at a time (nothing is kept);
- tokens are matched with regular expressions over the bytes, each match limited to a window
  (a 64 MiB string or run of spaces is many steps, never one long C call);
- runs of simple array elements and object members (below) are matched as one step per
  window and counted from their punctuation, so `[0,0,...]`, `[[],[],...]` or an array of
  flat records costs a few steps per window rather than a Python iteration per element.

Accepted exactly when `json.loads(data.decode(), parse_constant=<reject>)` would parse it,
except for the bounds: at most `max_values` values (every scalar, array, object and object
key counts one), arrays and objects nested at most `max_depth` deep, numbers of at most
WINDOW_BYTES bytes, integers of at most MAX_INTEGER_DIGITS digits (the most Python's
`json.loads` reads: a Python handler could not receive more). Every refusal is a ValueError
whose message is a phrase about the data ("is not valid JSON (expected a value at byte 7)",
"has more than 1000 values"), to be prefixed with what the data is ("event ...")."""

from __future__ import annotations

import codecs
import re

WINDOW_BYTES = 64 * 1024
MAX_INTEGER_DIGITS = 4300  # Python's default int_max_str_digits: json.loads refuses more

_WS_CLASS = rb"[ \t\n\r]"
_WS = re.compile(_WS_CLASS + rb"*+")
_NUMBER = re.compile(rb"-?(0|[1-9][0-9]*+)(\.[0-9]++)?([eE][+-]?[0-9]++)?")
_STRING_BODY = re.compile(rb'(?:[^"\\\x00-\x1f]++|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*+')
# Runs: one regex step matches many "element ," of an array or '"key" : element ,' of an
# object, where an element is a scalar (a number of at most 32 digits, a literal, a string of
# at most 256 characters without any of ,:[]{}, an empty `[]` or `{}`) or a flat array or
# object of such scalars. Inside a run every ',' ':' '[' '{' is structure, so the values in
# it are counted exactly from the bytes: commas + colons + non-empty containers (see
# `_run_values`).
_RUN_STRING = rb'"(?:[^"\\\x00-\x1f,:\[\]{}]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})){0,256}+"'
_RUN_NUMBER = rb"-?(?:0|[1-9][0-9]{0,31}+)(?:\.[0-9]{1,32}+)?(?:[eE][+-]?[0-9]{1,8}+)?"
_RUN_SCALAR = b"(?:%s|true|false|null|\\[\\]|\\{\\}|%s)" % (_RUN_NUMBER, _RUN_STRING)
_W = _WS_CLASS + rb"*+"
_RUN_MEMBER = b"%s%s:%s%s" % (_RUN_STRING, _W, _W, _RUN_SCALAR)
_RUN_FLAT_ARRAY = b"\\[%s%s(?:%s,%s%s)*+%s\\]" % (_W, _RUN_SCALAR, _W, _W, _RUN_SCALAR, _W)
_RUN_FLAT_OBJECT = b"\\{%s%s(?:%s,%s%s)*+%s\\}" % (_W, _RUN_MEMBER, _W, _W, _RUN_MEMBER, _W)
_RUN_ELEMENT = b"(?:%s|%s|%s)" % (_RUN_SCALAR, _RUN_FLAT_ARRAY, _RUN_FLAT_OBJECT)
_ARRAY_RUN = re.compile(b"(?:%s%s%s,)++" % (_W, _RUN_ELEMENT, _W))
_OBJECT_RUN = re.compile(b"(?:%s%s%s:%s%s%s,)++" % (_W, _RUN_STRING, _W, _W, _RUN_ELEMENT, _W))
_LONGEST_ESCAPE = 6  # \uXXXX
_LITERALS = (b"true", b"false", b"null")
_OPEN = {0x5B: 0x5D, 0x7B: 0x7D}  # '[' -> ']', '{' -> '}'
_QUOTE, _COMMA, _COLON, _LBRACKET = 0x22, 0x2C, 0x3A, 0x5B


def check_json(data: bytes | bytearray | memoryview, *, max_values: int, max_depth: int) -> None:
    """Raise ValueError (with a reason) unless `data` is one strict JSON value within the
    bounds (see the module doc). Never builds the value; empty data is not JSON."""
    buf = bytes(data) if not isinstance(data, bytes) else data
    _check_utf8(buf)
    _Scanner(buf, max_values, max_depth).run()


def _check_utf8(data: bytes) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    view = memoryview(data)
    try:
        for start in range(0, len(data), WINDOW_BYTES):
            decoder.decode(view[start : start + WINDOW_BYTES])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise ValueError(f"is not valid UTF-8 ({e.reason})") from None


class _Scanner:
    """A pushdown recogniser: `stack` holds the open brackets ('[' or '{'), nothing else."""

    def __init__(self, data: bytes, max_values: int, max_depth: int) -> None:
        self.data = data
        self.n = len(data)
        self.max_values = max_values
        self.max_depth = max_depth
        self.values = 0
        self.stack = bytearray()

    def run(self) -> None:
        pos = self._ws(0)
        need_value = True  # `pos` is where a value must start (whitespace skipped)
        while True:
            if need_value:
                pos, opened = self._value(pos)
                if opened:  # a non-empty array or object: `pos` is at its first element
                    pos = self._next_element(pos)
                else:
                    need_value = False
                continue
            pos = self._ws(pos)
            if not self.stack:
                if pos != self.n:
                    raise self._invalid("unexpected data after the value", pos)
                return
            if pos >= self.n:
                raise self._invalid("the data ends inside an array or object", pos)
            ch = self.data[pos]
            top = self.stack[-1]
            if ch == _COMMA:
                pos = self._next_element(self._ws(pos + 1))
                need_value = True
            elif ch == _OPEN[top]:
                self.stack.pop()
                pos += 1
            else:
                expected = "',' or ']'" if top == _LBRACKET else "',' or '}'"
                raise self._invalid(f"expected {expected}", pos)

    def _next_element(self, pos: int) -> int:
        """From the start of an element of the innermost container: skip runs of simple
        elements, and an object member's key; where the next value starts. Runs hold
        containers up to two levels below this one, so they are skipped only where that
        depth is allowed (deeper, every element takes the exact path)."""
        runs = len(self.stack) + 2 <= self.max_depth
        if self.stack[-1] == _LBRACKET:
            return self._array_run(pos) if runs else pos
        return self._member_key(self._object_run(pos) if runs else pos)

    # -- one value (its first token; containers are finished by `run`) ---------------------------

    def _value(self, pos: int) -> tuple[int, bool]:
        """Scan the value at `pos` (no leading whitespace): (the position after it, False), or
        for a non-empty array or object (the position of its first element, True): it is
        open on the stack and `run` scans its elements."""
        if pos >= self.n:
            raise self._invalid("expected a value, the data ends", pos)
        self._count(1, pos)
        ch = self.data[pos]
        if ch in _OPEN:
            if len(self.stack) >= self.max_depth:
                raise ValueError(f"nests arrays and objects deeper than {self.max_depth}")
            inner = self._ws(pos + 1)
            if inner < self.n and self.data[inner] == _OPEN[ch]:
                return inner + 1, False
            self.stack.append(ch)
            return inner, True
        if ch == _QUOTE:
            return self._string(pos), False
        for literal in _LITERALS:
            if self.data.startswith(literal, pos):
                return pos + len(literal), False
        return self._number(pos), False

    def _member_key(self, pos: int) -> int:
        """Scan `"key" :` at `pos`; the position of the member's value."""
        if pos >= self.n or self.data[pos] != _QUOTE:
            raise self._invalid("expected a string (an object key)", pos)
        self._count(1, pos)
        pos = self._ws(self._string(pos))
        if pos >= self.n or self.data[pos] != _COLON:
            raise self._invalid("expected ':' after an object key", pos)
        return self._ws(pos + 1)

    def _string(self, pos: int) -> int:
        """The position after the string starting (with its quote) at `pos`."""
        start = pos
        pos += 1
        while True:
            end = min(self.n, pos + WINDOW_BYTES)
            stop = _end_of(_STRING_BODY.match(self.data, pos, end), pos)
            # Stopped at the window's end, or by an escape the window cut: go on from there.
            if end < self.n and stop > pos and stop > end - _LONGEST_ESCAPE:
                pos = stop
                continue
            pos = stop
            break
        if pos < self.n and self.data[pos] == _QUOTE:
            return pos + 1
        if pos >= self.n:
            raise self._invalid("a string is not closed", start)
        if self.data[pos] == 0x5C:  # backslash
            raise self._invalid("a string has an invalid escape", pos)
        raise self._invalid("a string has an unescaped control character", pos)

    def _number(self, pos: int) -> int:
        end = min(self.n, pos + WINDOW_BYTES)
        match = _NUMBER.match(self.data, pos, end)
        if match is None:
            raise self._invalid("expected a value", pos)
        if match.end() == end and end < self.n and self.data[end] in b"0123456789.eE+-":
            raise ValueError(f"has a number longer than {WINDOW_BYTES} bytes")
        integer, fraction, exponent = match.groups()
        if fraction is None and exponent is None and len(integer) > MAX_INTEGER_DIGITS:
            raise ValueError(f"has an integer of more than {MAX_INTEGER_DIGITS} digits")
        return match.end()

    # -- runs of simple elements -----------------------------------------------------------------

    def _array_run(self, pos: int) -> int:
        """Skip runs of 'simple element ,' from `pos` (counting them); the next position."""
        while True:
            match = _ARRAY_RUN.match(self.data, pos, min(self.n, pos + WINDOW_BYTES))
            if match is None:
                return pos
            self._count(_run_values(self.data, pos, match.end()), pos)
            pos = self._ws(match.end())

    def _object_run(self, pos: int) -> int:
        """Skip runs of '"key" : simple element ,' from `pos` (counting them)."""
        while True:
            match = _OBJECT_RUN.match(self.data, pos, min(self.n, pos + WINDOW_BYTES))
            if match is None:
                return pos
            self._count(_run_values(self.data, pos, match.end()), pos)
            pos = self._ws(match.end())

    # -- helpers ---------------------------------------------------------------------------------

    def _ws(self, pos: int) -> int:
        while True:
            end = min(self.n, pos + WINDOW_BYTES)
            pos = _end_of(_WS.match(self.data, pos, end), pos)
            if pos < end or end == self.n:
                return pos

    def _count(self, values: int, pos: int) -> None:
        self.values += values
        if self.values > self.max_values:
            raise ValueError(f"has more than {self.max_values} values")

    def _invalid(self, what: str, pos: int) -> ValueError:
        return ValueError(f"is not valid JSON ({what} at byte {pos})")


def _end_of(match: re.Match[bytes] | None, pos: int) -> int:
    """Where a pattern that can match nothing stopped (`pos` if it did not match at all)."""
    return pos if match is None else match.end()


def _run_values(data: bytes, start: int, end: int) -> int:
    """The values (keys included) in a run `data[start:end]`: every element of a container
    but the last is followed by a comma, every object member has a colon, so with C commas,
    K colons and N non-empty containers inside the run (each run element ends with its own
    comma): values = C + K + N, in an array run as in an object run."""
    commas = data.count(b",", start, end)
    colons = data.count(b":", start, end)
    brackets = data.count(b"[", start, end) + data.count(b"{", start, end)
    empty = data.count(b"[]", start, end) + data.count(b"{}", start, end)
    return commas + colons + brackets - empty
