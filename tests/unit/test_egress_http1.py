"""The proxy's HTTP/1.1 reading (egress/http1.py) and request head writing: pure logic."""

from __future__ import annotations

import pytest

from sandboxd_pool.egress.http1 import (
    BadMessage,
    Framing,
    build_request_head,
    keeps_alive,
    parse_chunk_size,
    parse_request_head,
    parse_response_head,
    request_framing,
    response_framing,
    simple_response,
)
from sandboxd_pool.egress.proxy import forward_destination, parse_authority


def head(lines: str) -> bytes:
    return lines.replace("\n", "\r\n").encode() + b"\r\n\r\n"


def test_a_request_head() -> None:
    parsed = parse_request_head(head("POST http://a.test/x HTTP/1.1\nHost: a.test\nX-A:  v \t"))
    assert parsed.first == ("POST", "http://a.test/x", "HTTP/1.1")
    assert parsed.headers == (("Host", "a.test"), ("X-A", "v"))
    assert parsed.values("x-a") == ["v"]


@pytest.mark.parametrize(
    ("raw", "reason", "status"),
    [
        (b"GET / HTTP/1.1\r\nX: 1\r\n\r", "does not end with an empty line", 400),
        (b"GET / HTTP/1.1\r\nX: 1\n\r\n\r\n", "bare CR or LF", 400),
        (b"GET / HTTP/1.1\r\nX: 1\rY: 2\r\n\r\n", "bare CR or LF", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", "a NUL byte", 400),
        (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", "a control byte in the value of 'X'", 400),
        (b"GET / HTTP/1.1\r\n X: 1\r\n\r\n", "obsolete line folding", 400),
        (b"GET / HTTP/1.1\r\nX : 1\r\n\r\n", "not a header line", 400),
        (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", "not a header line", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", "not METHOD SP TARGET SP VERSION", 400),
        (b"GET /\x7f HTTP/1.1\r\n\r\n", "forbidden bytes", 400),
        (b"G\xc3T / HTTP/1.1\r\n\r\n", "forbidden bytes", 400),
        (b"GET / HTTP/2\r\n\r\n", "HTTP version b'HTTP/2'", 505),
        (b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 129 + b"\r\n", "more than 128 header lines", 431),
    ],
)
def test_what_is_refused_in_a_head(raw: bytes, reason: str, status: int) -> None:
    with pytest.raises(BadMessage, match=reason) as caught:
        parse_request_head(raw)
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("lines", "framing"),
    [
        ("GET / HTTP/1.1\nHost: a", Framing("none")),
        ("POST / HTTP/1.1\nContent-Length: 0", Framing("none")),
        ("POST / HTTP/1.1\nContent-Length: 12", Framing("length", 12)),
        ("POST / HTTP/1.1\nTransfer-Encoding: Chunked", Framing("chunked")),
    ],
)
def test_request_framing(lines: str, framing: Framing) -> None:
    assert request_framing(parse_request_head(head(lines))) == framing


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ("POST / HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked", "both"),
        ("POST / HTTP/1.1\nTransfer-Encoding: gzip, chunked", "only 'chunked'"),
        ("POST / HTTP/1.1\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked", "only"),
        ("POST / HTTP/1.0\nTransfer-Encoding: chunked", "in an HTTP/1.0 request"),
        ("POST / HTTP/1.1\nContent-Length: 1, 1", "not one decimal number"),
        ("POST / HTTP/1.1\nContent-Length: 1\nContent-Length: 1", "not one decimal number"),
        ("POST / HTTP/1.1\nContent-Length: -1", "not one decimal number"),
        ("POST / HTTP/1.1\nContent-Length: ١٢", "not one decimal number"),  # Arabic digits
        ("POST / HTTP/1.1\nContent-Length: 1234567890123456789", "not one decimal number"),
    ],
)
def test_ambiguous_request_framing_is_refused(lines: str, reason: str) -> None:
    parsed = parse_request_head(head(lines).decode("utf-8").encode("latin-1", "replace"))
    with pytest.raises(BadMessage, match=reason):
        request_framing(parsed)


@pytest.mark.parametrize(
    ("lines", "method", "framing"),
    [
        ("HTTP/1.1 200 OK\nContent-Length: 5", "GET", Framing("length", 5)),
        ("HTTP/1.1 200 OK\nContent-Length: 5", "HEAD", Framing("none")),
        ("HTTP/1.1 204 No Content", "GET", Framing("none")),
        ("HTTP/1.1 304 Not Modified\nContent-Length: 5", "GET", Framing("none")),
        ("HTTP/1.1 100 Continue", "POST", Framing("none")),
        ("HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked", "GET", Framing("chunked")),
        ("HTTP/1.1 200 OK\nTransfer-Encoding: gzip\nContent-Length: 5", "GET", Framing("close")),
        ("HTTP/1.1 200 OK\nContent-Length: 5, 5", "GET", Framing("length", 5)),
        ("HTTP/1.0 200 OK", "GET", Framing("close")),
    ],
)
def test_response_framing(lines: str, method: str, framing: Framing) -> None:
    assert response_framing(parse_response_head(head(lines)), method) == framing


def test_bad_responses_are_502() -> None:
    with pytest.raises(BadMessage, match="status line") as caught:
        parse_response_head(head("HTTP/1.1 20 OK"))
    assert caught.value.status == 502
    with pytest.raises(BadMessage, match="Content-Length") as caught:
        response_framing(parse_response_head(head("HTTP/1.1 200 OK\nContent-Length: 1, 2")), "GET")
    assert caught.value.status == 502


def test_keep_alive() -> None:
    assert keeps_alive(parse_request_head(head("GET / HTTP/1.1")))
    assert not keeps_alive(parse_request_head(head("GET / HTTP/1.1\nConnection: close")))
    assert not keeps_alive(parse_request_head(head("GET / HTTP/1.0")))
    assert keeps_alive(parse_request_head(head("GET / HTTP/1.0\nConnection: Keep-Alive")))
    assert not keeps_alive(parse_response_head(head("HTTP/1.1 200 OK\nConnection: close")))


def test_chunk_sizes() -> None:
    assert parse_chunk_size(b"1aF") == 0x1AF
    for bad in (b"", b"-1", b"1 ", b"1;a=b", b"0x10", b"1" * 17):
        with pytest.raises(BadMessage):
            parse_chunk_size(bad)


def test_the_head_the_destination_gets() -> None:
    parsed = parse_request_head(
        head(
            "POST http://a.test/x HTTP/1.1\nHost: evil.test\nConnection: close, X-Drop\n"
            "X-Drop: 1\nKeep-Alive: 5\nProxy-Authorization: p\nAuthorization: placeholder\n"
            "Expect: 100-continue\nTE: trailers\nUpgrade: websocket\nContent-Length: 3\nX-Keep: k"
        )
    )
    built = build_request_head(
        "POST",
        "/x",
        "a.test",
        parsed.headers,
        Framing("length", 3),
        (("Authorization", "Bearer real"),),
    )
    assert built == (
        b"POST /x HTTP/1.1\r\nHost: a.test\r\nX-Keep: k\r\nAuthorization: Bearer real\r\n"
        b"Content-Length: 3\r\n\r\n"
    )


def test_destinations() -> None:
    def dest(lines: str) -> tuple[str, str, int, str, str]:
        d = forward_destination(parse_request_head(head(lines)))
        return d.scheme, d.host, d.port, d.target, d.host_header

    assert dest("GET http://A.test/p?q HTTP/1.1") == ("http", "a.test", 80, "/p?q", "a.test")
    assert dest("GET https://a.test:8443 HTTP/1.1") == ("https", "a.test", 8443, "/", "a.test:8443")
    assert dest("GET http://a.test?q HTTP/1.1") == ("http", "a.test", 80, "/?q", "a.test")
    assert dest("GET http://[2001:db8::1]:81/ HTTP/1.1") == (
        "http", "2001:db8::1", 81, "/", "[2001:db8::1]:81",
    )  # fmt: skip
    assert dest("GET /p HTTP/1.1\nHost: b.test:81") == ("http", "b.test", 81, "/p", "b.test:81")
    for bad, reason in (
        ("GET /p HTTP/1.1", "one Host header"),
        ("GET /p HTTP/1.1\nHost: a\nHost: b", "one Host header"),
        ("GET http://u:p@a.test/ HTTP/1.1", "user information"),
        ("GET http://a.test/#f HTTP/1.1", "a fragment"),
        ("GET gopher://a.test/ HTTP/1.1", "not an http:// or https:// URL"),
        ("GET http://a.test:0/ HTTP/1.1", "the port is not 1 to 65535"),
        ("GET http://2001:db8::1/ HTTP/1.1", "put an IPv6 address in brackets"),
        ("GET * HTTP/1.1", "not an http:// or https:// URL"),
    ):
        with pytest.raises(BadMessage, match=reason):
            forward_destination(parse_request_head(head(bad)))
    assert parse_authority("a.test:443", None) == ("a.test", 443)
    with pytest.raises(BadMessage, match="a port is needed"):
        parse_authority("a.test", None)
    with pytest.raises(BadMessage, match="the port is not 1 to 65535"):
        parse_authority("a.test:", None)


def test_a_refusal_response() -> None:
    raw = simple_response(403, "Forbidden", "sandboxd egress: x\r\ny is not allowed\n")
    assert raw == (
        b"HTTP/1.1 403 Forbidden: sandboxd egress: x  y is not allowed\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 37\r\n"
        b"X-Sandboxd-Egress: refused\r\nConnection: close\r\n\r\n"
        b"sandboxd egress: x\r\ny is not allowed\n"
    )
