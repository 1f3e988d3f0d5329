"""The loopback HTTPS server `python -m bench egress` downloads from, its own CA, and the
client that measures: each peer runs in a process of its own, so that the proxy's thread (in
the bench process, as it is in the pool's) competes for no interpreter lock with them.

    python -m bench.egress.servers serve CHAIN_PEM      prints the port, serves until stdin ends
    python -m bench.egress.servers client SETTINGS_JSON  downloads, prints the times as JSON
"""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class SiteCA:
    """A CA of the bench site's own (its PEM at `pem_path`) and a certificate from it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench site ca")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem_path = directory / "site-ca.pem"
        self.pem_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def server_chain(self, host: str) -> Path:
        """A certificate for `host` from this CA, with its key, as one PEM file."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        chain = self.directory / "server.pem"
        chain.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return chain


class DownloadServer:
    """HTTPS on 127.0.0.1 and a free port: GET /download?n=N answers N bytes."""

    def __init__(self, chain: Path) -> None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(chain)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                size = int(parse_qs(urlsplit(self.path).query).get("n", ["0"])[0])
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                block = b"x" * 65536
                while size:
                    self.wfile.write(block[: min(size, len(block))])
                    size -= min(size, len(block))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class ServerProcess:
    """A DownloadServer in a process of its own (`serve`); closed when its stdin ends."""

    def __init__(self, chain: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.egress.servers", "serve", str(chain)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def measure(settings: dict[str, Any]) -> dict[str, list[float]]:
    """Run `client` in a process of its own; milliseconds per download, per mode."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.egress.servers", "client", json.dumps(settings)],
        capture_output=True,
        check=True,
        timeout=600,
    )
    times: dict[str, list[float]] = json.loads(done.stdout)
    return times


def _client(settings: dict[str, Any]) -> dict[str, list[float]]:
    """Interleaved rounds of one download per mode, each on a new connection. Modes:
    direct (straight to the server's address, verifying its name) and, per proxy port given,
    a CONNECT tunnel through it (TLS trusting the site's CA, or the pool's)."""
    host, port, size = settings["host"], settings["port"], settings["size"]
    site = ssl.create_default_context(cafile=settings["site_ca"])
    pool = ssl.create_default_context(cadata=settings["pool_ca"])

    def direct() -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(host, port, context=site)
        conn.sock = site.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname=host
        )
        return conn

    def tunnel(proxy: int, context: ssl.SSLContext) -> Callable[[], http.client.HTTPSConnection]:
        def connect() -> http.client.HTTPSConnection:
            conn = http.client.HTTPSConnection("127.0.0.1", proxy, context=context)
            conn.set_tunnel(host, port)
            return conn

        return connect

    modes = {
        "direct": direct,
        "passthrough": tunnel(settings["passthrough"], site),
        "opened": tunnel(settings["opened"], pool),
    }

    def download(connect: Callable[[], http.client.HTTPSConnection]) -> float:
        started = time.perf_counter()
        conn = connect()
        conn.request("GET", f"/download?n={size}")
        body = conn.getresponse().read()
        conn.close()
        assert len(body) == size, len(body)
        return (time.perf_counter() - started) * 1000

    for connect in modes.values():  # warm-up: the leaf certificate, caches
        download(connect)
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(settings["rounds"]):
        for name, connect in modes.items():
            times[name].append(download(connect))
    return times


def main() -> None:
    command, argument = sys.argv[1], sys.argv[2]
    if command == "serve":
        server = DownloadServer(Path(argument))
        print(server.port, flush=True)
        sys.stdin.read()
        server.close()
    else:
        print(json.dumps(_client(json.loads(argument))))


if __name__ == "__main__":
    main()
