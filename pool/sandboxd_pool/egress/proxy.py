"""The egress proxy: one connection from a program, served in the pool's event loop.

What a program may send to 127.0.0.1:3128 in its worker (see docs/egress.md):

    CONNECT host:port            a tunnel. To a host the tenant has no headers for, the proxy
                                 relays the bytes as they are (TLS passes through untouched).
                                 To a host with headers, the proxy answers the program's TLS
                                 with a leaf of the pool's CA (egress/ca.py), opens its own TLS
                                 to the destination (verified against the system store and
                                 --egress-ca-bundle), and forwards each HTTP/1.1 request with
                                 the headers set; plaintext in such a tunnel is refused.
    GET http://host/… (or https) absolute-form: the proxy forwards the request (opening TLS to
                                 the destination for https://, as axios asks it to).
    GET /… with Host: host       the same, for http (what an agent connecting straight to the
                                 proxy sends).

Before any byte goes out, in this order: the destination must match a rule of the execution's
policy (403), the byte budgets must not be used up (429), the name is resolved once by the
proxy and every address checked (egress/resolver.py; 403 when only refused addresses are
left, 502 when the name does not resolve), and the connection goes to a checked address. The
program sees each refusal as a response with a reason in its body (X-Sandboxd-Egress: refused);
the execution's ledger records it. Requests are read strictly (egress/http1.py) and their heads
written anew; the program's Host must name the tunnel's host. Connections beyond
max_egress_connections get 429; bytes beyond the byte limits are not relayed and the connection
is cut. A connection's head must be complete within HEAD_TIMEOUT_S of its first byte (408).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from . import http1
from .ca import CertificateAuthority
from .http1 import BadMessage, Framing, Head
from .ledger import Ledger, LimitReached, Tally
from .policy import EgressPolicy, IPNetwork, normalize_host
from .resolver import ResolveError, Resolver
from .streams import READ_BYTES, HeadTooLarge, ProgramTls, Sink, Stream

HEAD_TIMEOUT_S = 10.0  # a request head, from its first byte to its empty line
IDLE_TIMEOUT_S = 60.0  # a kept-alive connection waiting for its next request
CONNECT_TIMEOUT_S = 10.0  # TCP and, for https, TLS to the destination
TLS_RECORD_HANDSHAKE = 0x16
DEFAULT_PORTS = {"http": 80, "https": 443}
REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    408: "Request Timeout",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    505: "HTTP Version Not Supported",
}


Send = Callable[[bytes], Awaitable[None]]


class Refused(Exception):
    """The proxy answers `status` with `message` (which the program reads) and closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Destination:
    scheme: str  # "http" | "https"
    host: str  # normalized
    port: int
    target: str  # origin-form, what the destination gets
    host_header: str  # the Host the destination gets

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


@dataclass
class Upstream:
    key: tuple[str, str, int]
    stream: Stream
    sink: Sink
    tally: Tally

    def close(self) -> None:
        self.sink.close()


def authority(host: str, port: int, scheme: str = "") -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if DEFAULT_PORTS.get(scheme) == port else f"{shown}:{port}"


def parse_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """host[:port] (an IPv6 address in brackets) to (normalized host, port)."""
    shown = repr(text[:100])
    if "@" in text:
        raise BadMessage(f"authority {shown}: user information is not accepted")
    if text.startswith("["):
        close = text.find("]")
        rest = text[close + 1 :] if close > 0 else "?"
        if rest and not rest.startswith(":"):
            raise BadMessage(f"authority {shown}: not [IPV6]:PORT")
        raw_host, raw_port = text[: close + 1], rest[1:] if rest else None
    elif text.count(":") == 1:
        raw_host, raw_port = text.split(":")
    elif ":" in text:
        raise BadMessage(f"authority {shown}: put an IPv6 address in brackets")
    else:
        raw_host, raw_port = text, None
    if raw_port is None:
        if default_port is None:
            raise BadMessage(f"authority {shown}: a port is needed")
        port = default_port
    elif raw_port.isascii() and raw_port.isdigit() and 1 <= int(raw_port) <= 65535:
        port = int(raw_port)
    else:
        raise BadMessage(f"authority {shown}: the port is not 1 to 65535")
    try:
        return normalize_host(raw_host), port
    except ValueError as e:
        raise BadMessage(str(e)) from None


def forward_destination(head: Head) -> Destination:
    """Where a request sent to the proxy itself (not in a tunnel) goes."""
    target = head.target
    if target.startswith("/"):
        hosts = head.values("host")
        if len(hosts) != 1:
            raise BadMessage("send the proxy an absolute URL, or one Host header")
        host, port = parse_authority(hosts[0], 80)
        return Destination("http", host, port, target, authority(host, port, "http"))
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise BadMessage(f"request target {target[:100]!r}: not an http:// or https:// URL")
    if "#" in rest:
        raise BadMessage("a fragment (#) in the request target")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    host, port = parse_authority(rest[:cut], DEFAULT_PORTS[scheme])
    path = rest[cut:]
    path = path if path.startswith("/") else "/" + path
    return Destination(scheme, host, port, path, authority(host, port, scheme))


class Connection:
    """One program connection to the proxy, and the destinations it opens."""

    def __init__(
        self,
        policy: EgressPolicy,
        networks: tuple[IPNetwork, ...],
        ledger: Ledger,
        resolver: Resolver,
        ca: CertificateAuthority,
        upstream_tls: ssl.SSLContext,
        lookups: asyncio.Semaphore | None = None,
    ) -> None:
        self.lookups = lookups
        self.policy = policy
        self.networks = networks
        self.ledger = ledger
        self.resolver = resolver
        self.ca = ca
        self.upstream_tls = upstream_tls
        self.upstreams: list[Upstream] = []

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, over: str = ""
    ) -> None:
        """Serve the connection; `over`: it is beyond the execution's connection limit (the
        reason), answered 429 once its request head is read."""
        client = Stream(partial(reader.read, READ_BYTES))
        out = Sink(writer)
        try:
            head = await self.read_head(client, out, idle_s=HEAD_TIMEOUT_S)
            if head is None:
                return
            if over:
                await self.refuse(out, *self.named(head), Refused(429, over))
            elif head.method == "CONNECT":
                await self.tunnel(head, client, out)
            else:
                await self.forward(head, client, out)
        except Refused as e:
            await self.answer(out, e)
        except (LimitReached, OSError, EOFError, ssl.SSLError, TimeoutError, BadMessage):
            pass  # the connection ends; the ledger has what was relayed
        finally:
            for upstream in self.upstreams:
                upstream.close()
            out.close()

    # -- requests ---------------------------------------------------------------------------

    async def read_head(self, client: Stream, out: Sink, idle_s: float) -> Head | None:
        """The next request head; None when the connection ends (EOF, idle, or a bad head,
        answered and recorded)."""
        try:
            async with asyncio.timeout(idle_s):
                if not await client.wait_for_data():
                    return None
        except TimeoutError:
            return None
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                raw = await client.read_until(b"\r\n\r\n", http1.MAX_HEAD_BYTES)
            if raw is None:
                return None
            return http1.parse_request_head(raw)
        except TimeoutError:
            problem = Refused(408, f"no complete request head within {HEAD_TIMEOUT_S:g} s")
        except HeadTooLarge:
            problem = Refused(431, f"a request head over {http1.MAX_HEAD_BYTES} bytes")
        except EOFError:
            return None
        except BadMessage as e:
            problem = Refused(e.status, f"bad request: {e.reason}")
        await self.refuse(out, "", 0, problem)
        return None

    def named(self, head: Head) -> tuple[str, int]:
        """The destination a head asks for, as far as it can be read (for the ledger)."""
        with contextlib.suppress(BadMessage):
            if head.method == "CONNECT":
                return parse_authority(head.target, None)
            destination = forward_destination(head)
            return destination.host, destination.port
        return "", 0

    async def forward(self, head: Head | None, client: Stream, out: Sink) -> None:
        """Requests sent to the proxy itself, each to the destination it names."""
        upstream: Upstream | None = None
        first = True
        while head is not None:
            if head.method == "CONNECT":
                raise Refused(405, "CONNECT after a forwarded request on the same connection")
            try:
                destination = forward_destination(head)
                framing = http1.request_framing(head)
            except BadMessage as e:
                await self.refuse(
                    out, *self.named(head), Refused(e.status, f"bad request: {e.reason}")
                )
                return
            if upstream is None or upstream.key != destination.key:
                if upstream is not None:
                    upstream.close()
                    upstream = None
                if not first:
                    over = self.ledger.take_connection()
                    if over:
                        await self.refuse(
                            out, destination.host, destination.port, Refused(429, over)
                        )
                        return
                upstream = await self.open(
                    out, destination.host, destination.port, destination.scheme == "https"
                )
                if upstream is None:
                    return
            first = False
            keep_client, keep_upstream = await self.exchange(
                head, destination, framing, client, out, upstream
            )
            if not keep_upstream:
                upstream.close()
                upstream = None
            if not keep_client:
                return
            head = await self.read_head(client, out, idle_s=IDLE_TIMEOUT_S)

    async def exchange(
        self,
        head: Head,
        destination: Destination,
        framing: Framing,
        client: Stream,
        out: Sink,
        upstream: Upstream,
    ) -> tuple[bool, bool]:
        """Forward one request and its response. Returns whether the program's connection
        and the destination's may carry another request."""
        exhausted = self.ledger.exhausted()
        if exhausted:
            upstream.tally.note(exhausted)
            raise Refused(429, exhausted)
        extra = tuple((h.name, h.value) for h in self.policy.headers_for(destination.host))
        data = http1.build_request_head(
            head.method, destination.target, destination.host_header, head.headers, framing, extra
        )
        answered = False
        try:
            await self.send_up(upstream, data)
            if framing.kind != "none" and "100-continue" in head.tokens("expect"):
                out.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await out.drain()
            await self.relay_request_body(client, upstream, framing)
            response, response_framing = await self.response_head(upstream, out, head.method)
            answered = True
            await self.relay_response_body(upstream, out, response_framing)
        except BadMessage as e:
            # A body the proxy will not read on (a chunk extension, trailers: 400), or a
            # response it cannot (502). Answered unless the response had begun.
            if answered:
                raise
            reason = f"bad request: {e.reason}" if e.status < 500 else e.reason
            upstream.tally.note(reason)
            raise Refused(e.status, reason) from None
        except (OSError, EOFError, ssl.SSLError) as e:
            if answered:
                raise
            upstream.tally.note(f"the destination failed: {e}")
            raise Refused(502, f"{destination.host}:{destination.port} failed: {e}") from None
        keep = response_framing.kind != "close" and http1.keeps_alive(response)
        return http1.keeps_alive(head) and response_framing.kind != "close", keep

    async def relay_request_body(
        self, client: Stream, upstream: Upstream, framing: Framing
    ) -> None:
        if framing.kind == "length":
            await self.copy(client, framing.length, partial(self.send_up, upstream))
        elif framing.kind == "chunked":
            while True:
                line = await client.read_until(b"\r\n", http1.MAX_CHUNK_SIZE_LINE)
                if line is None:
                    raise EOFError("the program's body ended early")
                size = http1.parse_chunk_size(line[:-2])
                if size == 0:
                    try:
                        end = await client.read_until(b"\r\n", 2)
                    except HeadTooLarge:
                        raise BadMessage("trailers after the last chunk") from None
                    if end != b"\r\n":
                        raise BadMessage("trailers after the last chunk")
                    await self.send_up(upstream, b"0\r\n\r\n")
                    return
                await self.send_up(upstream, f"{size:x}\r\n".encode())
                await self.copy(client, size, partial(self.send_up, upstream))
                if await client.read_exactly(2) != b"\r\n":
                    raise BadMessage("a chunk's data is not followed by CRLF")
                await self.send_up(upstream, b"\r\n")

    async def response_head(
        self, upstream: Upstream, out: Sink, method: str
    ) -> tuple[Head, Framing]:
        """The destination's final response head, forwarded (1xx interim ones too)."""
        while True:
            try:
                raw = await upstream.stream.read_until(b"\r\n\r\n", http1.MAX_HEAD_BYTES)
            except HeadTooLarge:
                raise BadMessage("the destination's response head is too large", 502) from None
            if raw is None:
                raise EOFError("the destination closed the connection without a response")
            head = http1.parse_response_head(raw)
            if head.status == 101:
                raise BadMessage(
                    "the destination switched protocols, which the proxy does not relay", 502
                )
            await self.send_down(upstream, out, raw)
            if head.status >= 200:
                return head, http1.response_framing(head, method)

    async def relay_response_body(self, upstream: Upstream, out: Sink, framing: Framing) -> None:
        send = partial(self.send_down, upstream, out)
        if framing.kind == "length":
            await self.copy(upstream.stream, framing.length, send)
        elif framing.kind == "close":
            while data := await upstream.stream.read():
                await send(data)
        elif framing.kind == "chunked":
            while True:
                line = await upstream.stream.read_until(b"\r\n", 4096)
                if line is None:
                    raise EOFError("the destination's body ended early")
                size = http1.parse_response_chunk_size(line[:-2])
                await send(line)
                if size == 0:
                    while True:  # trailers, then the empty line
                        trailer = await upstream.stream.read_until(b"\r\n", http1.MAX_HEAD_BYTES)
                        if trailer is None:
                            raise EOFError("the destination's body ended early")
                        await send(trailer)
                        if trailer == b"\r\n":
                            return
                await self.copy(upstream.stream, size, send)
                await send(await upstream.stream.read_exactly(2))

    # -- tunnels ----------------------------------------------------------------------------

    async def tunnel(self, head: Head, client: Stream, out: Sink) -> None:
        try:
            host, port = parse_authority(head.target, None)
        except BadMessage as e:
            await self.refuse(out, "", 0, Refused(400, f"bad request: {e.reason}"))
            return
        opened = bool(self.policy.headers_for(host))
        upstream = await self.open(out, host, port, tls=opened)
        if upstream is None:
            return
        out.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await out.drain()
        if not opened:
            await self.relay_raw(client, out, upstream)
            return
        async with asyncio.timeout(HEAD_TIMEOUT_S):
            if not await client.wait_for_data():
                return
        if client.peek(1) != bytes([TLS_RECORD_HANDSHAKE]):
            reason = (
                f"the proxy adds {host}'s credentials only inside TLS: send plain http:// "
                "requests to the proxy itself, not through CONNECT"
            )
            upstream.tally.note(f"refused: {reason}")
            out.write(http1.simple_response(400, REASONS[400], f"sandboxd egress: {reason}\n"))
            await out.drain()
            return
        tls = ProgramTls(client, out.writer, self.ca.server_context(host))
        try:
            await tls.handshake()
        except (ssl.SSLError, EOFError, TimeoutError) as e:
            upstream.tally.note(f"the program's TLS handshake with the proxy failed: {e}")
            return
        await self.tunnel_requests(tls.stream, tls, upstream, host, port)

    async def tunnel_requests(
        self, client: Stream, out: Sink, upstream: Upstream, host: str, port: int
    ) -> None:
        """HTTP/1.1 requests inside an opened TLS tunnel: all to the tunnel's destination."""
        head = await self.read_head(client, out, idle_s=HEAD_TIMEOUT_S)
        while head is not None:
            try:
                destination = self.in_tunnel(head, host, port)
                framing = http1.request_framing(head)
            except BadMessage as e:
                await self.refuse(out, host, port, Refused(e.status, f"bad request: {e.reason}"))
                return
            except Refused as e:
                await self.refuse(out, host, port, e)
                return
            try:
                keep_client, keep_upstream = await self.exchange(
                    head, destination, framing, client, out, upstream
                )
            except Refused as e:
                await self.answer(out, e)
                return
            if not (keep_client and keep_upstream):
                return
            head = await self.read_head(client, out, idle_s=IDLE_TIMEOUT_S)

    def in_tunnel(self, head: Head, host: str, port: int) -> Destination:
        """A request inside the tunnel to host:port must be for that host (its Host header
        selects the site on the destination's address: it may not name another)."""
        if head.method == "CONNECT":
            raise Refused(405, "CONNECT inside a tunnel")
        if head.target.startswith("/"):
            hosts = head.values("host")
            if len(hosts) > 1:
                raise BadMessage("more than one Host header")
            named = parse_authority(hosts[0], 443)[0] if hosts else host
            if named != host:
                raise Refused(403, f"the Host header names {named}; this tunnel is to {host}")
            return Destination(
                "https",
                host,
                port,
                head.target,
                hosts[0] if hosts else authority(host, port, "https"),
            )
        destination = forward_destination(head)
        if (destination.host, destination.port) != (host, port):
            raise Refused(
                403,
                f"a request for {destination.host}:{destination.port} inside the tunnel to {host}:{port}",
            )
        return destination

    async def relay_raw(self, client: Stream, out: Sink, upstream: Upstream) -> None:
        async def pipe(source: Stream, sink: Sink, send: Send) -> None:
            while data := await source.read():
                await send(data)
            sink.write_eof()

        up = asyncio.create_task(pipe(client, upstream.sink, partial(self.send_up, upstream)))
        down = asyncio.create_task(
            pipe(upstream.stream, out, partial(self.send_down, upstream, out))
        )
        try:
            pending: set[asyncio.Task[None]] = {up, down}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        return
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)

    # -- destinations -----------------------------------------------------------------------

    async def open(self, out: Sink, host: str, port: int, tls: bool) -> Upstream | None:
        """Connect to host:port if the policy, the budgets and the address check allow it;
        else answer the program, record the refusal and return None."""
        shown = authority(host, port)
        if self.policy.rule_for(host, port) is None:
            await self.refuse(
                out, host, port, Refused(403, f"{shown} is not in this execution's egress rules")
            )
            return None
        exhausted = self.ledger.exhausted()
        if exhausted:
            await self.refuse(out, host, port, Refused(429, exhausted))
            return None
        try:
            resolved = await self.resolver.resolve(host, port, self.networks, self.lookups)
        except ResolveError as e:
            if e.refused:
                await self.refuse(out, host, port, Refused(403, str(e)))
            else:
                self.ledger.tally(host, port, True).note(str(e))
                await self.answer(out, Refused(502, str(e)))
            return None
        failures = []
        for address in resolved.usable:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(
                        str(address),
                        port,
                        ssl=self.upstream_tls if tls else None,
                        server_hostname=host if tls else None,
                        limit=READ_BYTES,
                    )
            except ssl.SSLCertVerificationError as e:
                failures.append(f"{address}: the certificate does not verify ({e.verify_message})")
                break
            except (OSError, TimeoutError, ssl.SSLError) as e:
                failures.append(f"{address}: {e or type(e).__name__}")
                continue
            tally = self.ledger.tally(host, port, True)
            tally.connections += 1
            upstream = Upstream(
                key=("https" if tls else "http", host, port),
                stream=Stream(partial(reader.read, READ_BYTES)),
                sink=Sink(writer),
                tally=tally,
            )
            self.upstreams.append(upstream)
            return upstream
        reason = f"could not connect to {shown}: {'; '.join(failures)}"
        self.ledger.tally(host, port, True).note(reason)
        await self.answer(out, Refused(502, reason))
        return None

    # -- relaying, counted ----------------------------------------------------------------------

    async def send_up(self, upstream: Upstream, data: bytes) -> None:
        take = self.ledger.sendable(upstream.tally, len(data))
        if take:
            upstream.sink.write(data[:take])
            await upstream.sink.drain()
        if take < len(data):
            raise LimitReached(upstream.tally.reason)

    async def send_down(self, upstream: Upstream, out: Sink, data: bytes) -> None:
        take = self.ledger.receivable(upstream.tally, len(data))
        if take:
            out.write(data[:take])
            await out.drain()
        if take < len(data):
            raise LimitReached(upstream.tally.reason)

    @staticmethod
    async def copy(source: Stream, size: int, send: Send) -> None:
        left = size
        while left:
            data = await source.read(min(left, READ_BYTES))
            if not data:
                raise EOFError(f"the stream ended {left} bytes before the end of a body")
            left -= len(data)
            await send(data)

    # -- answers ----------------------------------------------------------------------------

    async def refuse(self, out: Sink, host: str, port: int, refused: Refused) -> None:
        self.ledger.refuse(host, port, refused.message)
        await self.answer(out, refused)

    @staticmethod
    async def answer(out: Sink, refused: Refused) -> None:
        body = f"sandboxd egress: {refused.message}\n"
        with contextlib.suppress(OSError, RuntimeError, ssl.SSLError):
            out.write(
                http1.simple_response(refused.status, REASONS.get(refused.status, "Error"), body)
            )
            await out.drain()
