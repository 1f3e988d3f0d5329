"""Byte streams for the proxy: pull-based reads with the bounds HTTP parsing needs, and the TLS
the proxy speaks to the program when it opens a connection (a leaf of the pool's CA).

A Stream pulls chunks from a source coroutine only when its reader wants more, so a slow
consumer slows the producer (no unbounded buffer), and bytes read ahead (the first chunk of
a tunnel, looked at to tell TLS from plaintext) are never lost. ProgramTls runs the server side
of TLS over a Stream with ssl.SSLObject, so the proxy chooses when, and on which bytes, to
start it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable

READ_BYTES = 64 * 1024
TLS_HANDSHAKE_TIMEOUT_S = 10.0


class HeadTooLarge(Exception):
    pass


class Stream:
    def __init__(self, source: Callable[[], Awaitable[bytes]], initial: bytes = b"") -> None:
        self._source = source
        self._buffer = bytearray(initial)
        self._eof = False

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self._source()
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    async def read(self, limit: int = READ_BYTES) -> bytes:
        """Up to `limit` bytes (what is buffered, else the next chunk); b"" at EOF."""
        if not self._buffer:
            if self._eof:
                return b""
            chunk = await self._source()
            if not chunk:
                self._eof = True
                return b""
            if len(chunk) <= limit:
                return chunk  # the relays' common case: no copy
            self._buffer += chunk
        data = bytes(self._buffer[:limit])
        del self._buffer[:limit]
        return data

    async def read_until(self, separator: bytes, limit: int) -> bytes | None:
        """Bytes up to and including `separator`; None at EOF before any byte; HeadTooLarge
        past `limit`; EOFError at EOF in the middle."""
        start = 0
        while True:
            found = self._buffer.find(separator, start)
            if found >= 0:
                end = found + len(separator)
                if end > limit:
                    raise HeadTooLarge
                data = bytes(self._buffer[:end])
                del self._buffer[:end]
                return data
            if len(self._buffer) > limit:
                raise HeadTooLarge
            start = max(0, len(self._buffer) - len(separator) + 1)
            if not await self._fill():
                if not self._buffer:
                    return None
                raise EOFError(f"the stream ended after {len(self._buffer)} bytes of a message")

    async def wait_for_data(self) -> bool:
        """Wait until a byte is buffered; False at EOF."""
        return bool(self._buffer) or await self._fill()

    def peek(self, size: int) -> bytes:
        """What is buffered, up to `size` bytes, without taking it."""
        return bytes(self._buffer[:size])

    async def read_exactly(self, size: int) -> bytes:
        """`size` bytes (small reads: a chunk's CRLF); EOFError if the stream ends first."""
        while len(self._buffer) < size:
            if not await self._fill():
                raise EOFError(f"the stream ended {size - len(self._buffer)} bytes short")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


class Sink:
    """Where bytes go: a transport (through its asyncio.StreamWriter)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def write_eof(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            if self.writer.can_write_eof():
                self.writer.write_eof()

    def close(self) -> None:
        self.writer.close()


class ProgramTls(Sink):
    """The proxy's side of a program's TLS connection: server, with `context`'s certificate.
    Reads come from `raw` (a Stream, holding the first bytes already read); writes go to
    `writer`. `stream` is the plaintext the program sends."""

    def __init__(self, raw: Stream, writer: asyncio.StreamWriter, context: ssl.SSLContext) -> None:
        super().__init__(writer)
        self._raw = raw
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        self.stream = Stream(self._receive)

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.writer.write(data)

    async def _feed(self) -> None:
        data = await self._raw.read()
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    async def handshake(self) -> None:
        """Raises ssl.SSLError (the program refused the certificate, or spoke no TLS),
        TimeoutError, or EOFError."""
        async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT_S):
            while True:
                try:
                    self._tls.do_handshake()
                    self._flush()
                    await self.writer.drain()
                    return
                except ssl.SSLWantReadError:
                    self._flush()
                    await self.writer.drain()
                    if self._in.eof:
                        raise EOFError(
                            "the program closed the connection in the handshake"
                        ) from None
                    await self._feed()

    async def _receive(self) -> bytes:
        while True:
            try:
                data = self._tls.read(READ_BYTES)
                self._flush()
                return data
            except ssl.SSLWantReadError:
                self._flush()
                if self._in.eof:
                    return b""
                await self._feed()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def write(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()

    def write_eof(self) -> None:
        with contextlib.suppress(ssl.SSLError, OSError, RuntimeError):
            self._tls.unwrap()
        self._flush()

    def close(self) -> None:
        self.writer.close()
