"""HTTP/1.1 messages as the egress proxy reads them from the program: strictly.

The proxy adds a secret to requests it forwards, so it must see exactly the requests the
destination will see. Anything two parsers could read two ways is refused with 400 rather than
guessed at (request smuggling): a line not ended by CRLF, a bare CR, obsolete line folding, a
header name with blanks or other non-token bytes, control bytes in a value, Content-Length and
Transfer-Encoding together, a Transfer-Encoding other than exactly `chunked`, a repeated or
non-numeric Content-Length, chunk extensions or trailers, a request line that is not
`METHOD SP TARGET SP HTTP/1.x`. The head the destination gets is written anew by the proxy
from what was parsed (egress/proxy.py), and the body is sent with the framing the proxy read,
so the proxy and the destination cannot disagree on where a request ends.

Responses come from servers the tenant chose; their heads are parsed only to find where each
body ends and forwarded as received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 128
MAX_CHUNK_SIZE_LINE = 32

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET = re.compile(rb"[\x21-\x7e]+")  # no blanks, no controls, ASCII
_STATUS = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
        "host",
    }
)


class BadMessage(Exception):
    """A message the proxy refuses to read; `status` is what the program gets (400, 431)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Framing:
    """Where a body ends: "none", "length" (`length` bytes), "chunked", or "close" (at EOF;
    responses only)."""

    kind: str
    length: int = 0


NO_BODY = Framing("none")


@dataclass(frozen=True)
class Head:
    """A request or response head: its first line's parts and its headers (names as sent)."""

    first: tuple[str, str, str]  # request: method, target, version; response: version, status, ""
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for n, v in self.headers if n.lower() == lower]

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every `name` header, lowercased."""
        return {t.strip().lower() for v in self.values(name) for t in v.split(",") if t.strip()}

    @property
    def method(self) -> str:
        return self.first[0]

    @property
    def target(self) -> str:
        return self.first[1]

    @property
    def version(self) -> str:
        return self.first[2] or self.first[0]

    @property
    def status(self) -> int:
        return int(self.first[1])


def _lines(raw: bytes) -> list[bytes]:
    if not raw.endswith(b"\r\n\r\n"):
        raise BadMessage("the head does not end with an empty line (CRLF CRLF)")
    lines = raw[:-4].split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise BadMessage("a line ends with a bare CR or LF (only CRLF ends a line)")
        if b"\0" in line:
            raise BadMessage("a NUL byte in the head")
    return lines


def _headers(lines: list[bytes]) -> tuple[tuple[str, str], ...]:
    if len(lines) > MAX_HEADERS:
        raise BadMessage(f"more than {MAX_HEADERS} header lines", 431)
    headers = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise BadMessage("obsolete line folding (a header line starting with a blank)")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadMessage(f"not a header line: {line[:80]!r}")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise BadMessage(f"a control byte in the value of {name.decode()!r}")
        headers.append((name.decode("ascii"), value.decode("latin-1")))
    return tuple(headers)


def parse_request_head(raw: bytes) -> Head:
    lines = _lines(raw)
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadMessage("the request line is not METHOD SP TARGET SP VERSION")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
        raise BadMessage("the request line's method or target holds forbidden bytes")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadMessage(f"HTTP version {version[:16]!r} (the proxy speaks HTTP/1.0 and 1.1)", 505)
    return Head(
        first=(method.decode(), target.decode(), version.decode()), headers=_headers(lines[1:])
    )


def parse_response_head(raw: bytes) -> Head:
    lines = _lines(raw)
    match = _STATUS.fullmatch(lines[0])
    if match is None:
        raise BadMessage("the destination's status line is not HTTP/1.x NNN", 502)
    try:
        headers = _headers(lines[1:])
    except BadMessage as e:
        raise BadMessage(f"the destination's response: {e.reason}", 502) from None
    return Head(first=(lines[0][:8].decode(), match.group(1).decode(), ""), headers=headers)


def request_framing(head: Head) -> Framing:
    """Where the request's body ends (RFC 9112 section 6, without the leeway)."""
    te = head.values("transfer-encoding")
    cl = head.values("content-length")
    if te and cl:
        raise BadMessage("both Transfer-Encoding and Content-Length")
    if te:
        if head.version != "HTTP/1.1":
            raise BadMessage("Transfer-Encoding in an HTTP/1.0 request")
        if len(te) != 1 or te[0].lower() != "chunked":
            raise BadMessage(f"Transfer-Encoding {', '.join(te)!r} (only 'chunked' is accepted)")
        return Framing("chunked")
    if cl:
        if len(cl) != 1 or not cl[0].isdigit() or not cl[0].isascii() or len(cl[0]) > 18:
            raise BadMessage(f"Content-Length {', '.join(cl)!r} is not one decimal number")
        return Framing("length", int(cl[0])) if int(cl[0]) else NO_BODY
    return NO_BODY


def response_framing(head: Head, request_method: str) -> Framing:
    status = head.status
    if request_method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return NO_BODY
    te = head.tokens("transfer-encoding")
    if te:
        last = head.values("transfer-encoding")[-1].split(",")[-1].strip().lower()
        return Framing("chunked") if last == "chunked" else Framing("close")
    cl = head.values("content-length")
    if cl:
        values = {v.strip() for c in cl for v in c.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise BadMessage(f"the destination sent Content-Length {', '.join(cl)!r}", 502)
        return Framing("length", int(values.pop()))
    return Framing("close")


def parse_chunk_size(line: bytes) -> int:
    """A chunk-size line (its CRLF stripped): hex digits only."""
    if not line or len(line) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in line):
        raise BadMessage(f"a chunk size line {line[:40]!r} (hex digits only, no extensions)")
    return int(line, 16)


def parse_response_chunk_size(line: bytes) -> int:
    """A chunk-size line of a response: extensions allowed (and ignored)."""
    size = line.split(b";", 1)[0].strip(b" \t")
    try:
        return parse_chunk_size(size)
    except BadMessage as e:
        raise BadMessage(f"the destination's {e.reason}", 502) from None


def keeps_alive(head: Head) -> bool:
    """Whether the sender of `head` (request or response) keeps the connection open."""
    connection = head.tokens("connection")
    if head.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def build_request_head(
    method: str,
    target: str,
    host: str,
    headers: tuple[tuple[str, str], ...],
    framing: Framing,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """The head the destination gets: the request line, Host, the program's end-to-end headers
    (hop-by-hop ones and those named in its Connection header dropped), `extra` (the tenant's,
    replacing any the program sent under the same names), the framing the proxy will send."""
    connection_named = {
        t.strip().lower() for n, v in headers if n.lower() == "connection" for t in v.split(",")
    }
    replaced = {name.lower() for name, _ in extra}
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in connection_named or lower in replaced:
            continue
        lines.append(f"{name}: {value}")
    lines.extend(f"{name}: {value}" for name, value in extra)
    if framing.kind == "length":
        lines.append(f"Content-Length: {framing.length}")
    elif framing.kind == "chunked":
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def simple_response(status: int, reason: str, body: str, close: bool = True) -> bytes:
    """A small text/plain response the proxy itself gives (a refusal, a failure). The status
    line's reason phrase repeats `body` (one line, printable ASCII, at most 200 characters):
    clients that report only the status line of a refused CONNECT (Python's http.client and
    urllib: "Tunnel connection failed: 403 ...") show the program why."""
    payload = body.encode("utf-8")
    detail = "".join(c if " " <= c <= "~" else " " for c in body.strip())[:200]
    lines = [
        f"HTTP/1.1 {status} {reason}: {detail}" if detail else f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "X-Sandboxd-Egress: refused" if status >= 400 else "X-Sandboxd-Egress: proxy",
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
