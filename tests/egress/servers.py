"""Local servers that stand in for SaaS APIs in the egress tests, and the CA they are signed by.

ApiServer is a real HTTP/1.1 server (http.server, threads) on 127.0.0.1 and a free port, with
TLS from a CA of its own (SiteCA: not in any system store, so the proxy trusts it only through
the pool's egress_ca_file / --egress-ca-bundle). It records every request it gets (method,
path, headers, body) and answers:

    /echo            200, the request as JSON (method, path, headers, body length)
    /export.xml      200, a small XML export (the integration test's source API); 401 unless
                     Authorization is the expected credential, when the server has one
    /download?n=N    200, N bytes (a deterministic pattern)
    /upload          200 with the number of body bytes it read (POST)
    /ingest          POST JSON; 401 unless Authorization is the expected credential, else
                     200 {"stored": the document} (the integration test's destination API)
    anything else    404
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

EXPORT_XML = """<?xml version="1.0"?>
<export>
  <order id="A-1"><customer>Ada</customer><total currency="EUR">12.50</total></order>
  <order id="A-2"><customer>Grace</customer><total currency="EUR">7.25</total></order>
</export>
"""


def pattern(size: int) -> bytes:
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


class SiteCA:
    """A CA for the test sites, and server certificates from it (written under `directory`)."""

    def __init__(self, directory: Path, name: str = "egress test site ca") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem_path = directory / "site-ca.pem"
        self.pem_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def server_context(self, names: list[str]) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        chain = self.directory / f"server-{names[0]}.pem"
        chain.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        return context


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class ApiServer:
    """A threaded HTTP(S) server on 127.0.0.1; `seen` holds every request it read."""

    tls: ssl.SSLContext | None = None
    credential: str = ""  # the Authorization /ingest expects
    seen: list[Seen] = field(default_factory=list)
    stored: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                server.seen.append(Seen(self.command, self.path, list(self.headers.items()), body))
                url = urlsplit(self.path)
                if url.path == "/echo":
                    answer = {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body_bytes": len(body),
                    }
                    self._answer(200, json.dumps(answer).encode())
                elif url.path == "/export.xml":
                    if server.credential and self.headers.get("Authorization") != server.credential:
                        self._answer(401, b'{"error": "missing or wrong credential"}')
                        return
                    self._answer(200, EXPORT_XML.encode(), "application/xml")
                elif url.path == "/download":
                    size = int(parse_qs(url.query).get("n", ["0"])[0])
                    self._answer(200, pattern(size), "application/octet-stream")
                elif url.path == "/upload":
                    self._answer(200, json.dumps({"received": len(body)}).encode())
                elif url.path == "/ingest":
                    if self.headers.get("Authorization") != server.credential:
                        self._answer(401, b'{"error": "missing or wrong credential"}')
                        return
                    document = json.loads(body)
                    server.stored.append(document)
                    self._answer(200, json.dumps({"stored": document}).encode())
                else:
                    self._answer(404, b'{"error": "not found"}')

            do_GET = do_POST = do_PUT = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def headers_seen(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for s in self.seen for n, v in s.headers if n.lower() == lower]


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="sandboxd-egress-test-")
