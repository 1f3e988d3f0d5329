"""A hostile program against the proxy: it speaks to 127.0.0.1:3128 with raw sockets, sends what
no client would, and looks everywhere it can for the tenant's secret and the CA's key.

Each test asserts the exact answer of the proxy, what the destination saw (never a smuggled
request, never the secret outside a head the proxy wrote), and that the secret did not leak to
the program."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sandboxd_pool import ExecutionRequest, Limits, Pool, Runtime, Verdict, request_frame
from sandboxd_pool.egress.proxy import HEAD_TIMEOUT_S

from .conftest import SECRET, Sites, run

# Send each argument (a raw request, with \r\n written as such) on a fresh connection to the
# proxy, half-close, and print what came back (the status line and the body).
RAW = textwrap.dedent(
    """
    import json, socket, sys
    out = []
    for raw in sys.argv[1:]:
        s = socket.create_connection(("127.0.0.1", 3128), timeout=15)
        s.sendall(raw.encode("latin-1"))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        out.append([head.split(b"\\r\\n")[0].decode(), body.decode(errors="replace")])
    print(json.dumps(out))
    """
)

# The same inside a TLS tunnel to keyed.example.test (the proxy opens it: the tenant has a
# credential there), trusting the jail's store (which holds the pool's CA).
RAW_IN_TUNNEL = textwrap.dedent(
    """
    import json, socket, ssl, sys
    host = sys.argv[1]
    out = []
    for raw in sys.argv[2:]:
        s = socket.create_connection(("127.0.0.1", 3128), timeout=15)
        s.sendall(f"CONNECT {host} HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200 "), "no tunnel"
        t = ssl.create_default_context().wrap_socket(s, server_hostname=host.rsplit(":", 1)[0])
        t.sendall(raw.encode("latin-1"))
        data = b""
        while True:
            try:
                chunk = t.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            data += chunk
        responses = [r.split("\\r\\n", 1)[0] for r in data.decode(errors="replace").split("HTTP/1.1 ")[1:]]
        out.append(responses)
    print(json.dumps(out))
    """
)


def _raw(pool: Pool, sites: Sites, *requests: str) -> list[list[str]]:
    outcome = run(pool, Runtime.PYTHON, RAW, sites.policy(), args=requests)
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    result: list[list[str]] = json.loads(outcome.stdout)
    return result


SMUGGLING = {
    "Content-Length and Transfer-Encoding": (
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "both Transfer-Encoding and Content-Length",
    ),
    "Transfer-Encoding with another coding": (
        "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding 'chunked, identity' (only 'chunked' is accepted)",
    ),
    "Transfer-Encoding obfuscated": (
        "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "not a header line: b'Transfer-Encoding : chunked'",
    ),
    "two Content-Length": (
        "Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
        "Content-Length '3, 40' is not one decimal number",
    ),
    "Content-Length with a sign": (
        "Content-Length: +3\r\n\r\nabc",
        "Content-Length '+3' is not one decimal number",
    ),
    "obsolete line folding": (
        "X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        "obsolete line folding (a header line starting with a blank)",
    ),
    "bare LF": (
        "X-A: 1\nTransfer-Encoding: chunked\r\n\r\n",
        "a line ends with a bare CR or LF (only CRLF ends a line)",
    ),
    "a chunk extension": (
        "Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n",
        "a chunk size line b'3;ext=1' (hex digits only, no extensions)",
    ),
    "trailers": (
        "Transfer-Encoding: chunked\r\n\r\n0\r\nAuthorization: x\r\n\r\n",
        "trailers after the last chunk",
    ),
}


@pytest.mark.parametrize("case", list(SMUGGLING))
def test_ambiguous_framing_is_refused_and_nothing_reaches_the_destination(
    egress_pool: Pool, sites: Sites, case: str
) -> None:
    headers_and_body, reason = SMUGGLING[case]
    port = sites.plain.port
    raw = (
        f"POST http://plain.example.test:{port}/upload HTTP/1.1\r\n"
        f"Host: plain.example.test:{port}\r\n{headers_and_body}"
        f"GET http://plain.example.test:{port}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    before = len(sites.plain.seen)
    (answer,) = _raw(egress_pool, sites, raw)
    assert answer == [
        f"HTTP/1.1 400 Bad Request: sandboxd egress: bad request: {reason}",
        f"sandboxd egress: bad request: {reason}\n",
    ]
    if case in ("a chunk extension", "trailers"):
        # The head was fine, so the request went out; the body is where the proxy stopped: it
        # answered and cut the connection, so the destination never got a complete request.
        assert all(
            s.path == "/upload" and not s.body.endswith(b"abc") for s in sites.plain.seen[before:]
        )
        return
    assert answer == [
        f"HTTP/1.1 400 Bad Request: sandboxd egress: bad request: {reason}",
        f"sandboxd egress: bad request: {reason}\n",
    ]
    assert sites.plain.seen[before:] == []


def test_a_smuggled_request_in_a_body_stays_a_body(egress_pool: Pool, sites: Sites) -> None:
    """Inside the tunnel where the proxy adds the credential: a body that holds a whole request
    head is a body to the proxy and to the destination alike, so the credential is written in
    the one real head only, and no request the proxy did not see reaches the destination."""
    host = f"keyed.example.test:{sites.keyed.port}"
    inner = f"GET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n"
    raw = (
        f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(inner)}\r\n\r\n{inner}"
        f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    before = len(sites.keyed.seen)
    outcome = run(egress_pool, Runtime.PYTHON, RAW_IN_TUNNEL, sites.policy(), args=(host, raw))
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert json.loads(outcome.stdout) == [["200 OK", "200 OK"]]
    seen = sites.keyed.seen[before:]
    assert [(s.method, s.path, s.body) for s in seen] == [
        ("POST", "/upload", inner.encode()),
        ("POST", "/upload", b""),
    ]
    for request in seen:
        assert [v for n, v in request.headers if n.lower() == "authorization"] == [SECRET]
        assert SECRET.encode() not in request.body
    assert SECRET.encode() not in outcome.stdout + outcome.stderr


def test_the_program_cannot_choose_or_duplicate_the_credential(
    egress_pool: Pool, sites: Sites
) -> None:
    host = f"keyed.example.test:{sites.keyed.port}"
    raw = (
        f"POST /upload HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer mine\r\n"
        "authorization: Bearer also-mine\r\nX-Forwarded-For: 1.2.3.4\r\nProxy-Authorization: y\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    before = len(sites.keyed.seen)
    outcome = run(egress_pool, Runtime.PYTHON, RAW_IN_TUNNEL, sites.policy(), args=(host, raw))
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    (request,) = sites.keyed.seen[before:]
    names = [n.lower() for n, _ in request.headers]
    assert names.count("authorization") == 1
    assert [v for n, v in request.headers if n.lower() == "authorization"] == [SECRET]
    assert "proxy-authorization" not in names


def test_a_tunnel_carries_requests_for_its_own_host_only(egress_pool: Pool, sites: Sites) -> None:
    """The Host header picks the site on the destination's address: a request in the tunnel to
    keyed naming another host (which would get keyed's credential) is refused."""
    host = f"keyed.example.test:{sites.keyed.port}"
    wrong_host = "GET /echo HTTP/1.1\r\nHost: evil.example.test\r\n\r\n"
    wrong_url = (
        f"GET https://plain.example.test:{sites.plain.port}/echo HTTP/1.1\r\nHost: {host}\r\n\r\n"
    )
    connect = f"CONNECT plain.example.test:{sites.plain.port} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    before = len(sites.keyed.seen) + len(sites.plain.seen)
    outcome = run(
        egress_pool, Runtime.PYTHON, RAW_IN_TUNNEL, sites.policy(),
        args=(host, wrong_host, wrong_url, connect),
    )  # fmt: skip
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert json.loads(outcome.stdout) == [
        ["403 Forbidden: sandboxd egress: the Host header names evil.example.test; this tunnel is to keyed.example.test"],
        [f"403 Forbidden: sandboxd egress: a request for plain.example.test:{sites.plain.port} inside the tunnel to {host}"],
        ["405 Method Not Allowed: sandboxd egress: CONNECT inside a tunnel"],
    ]  # fmt: skip
    assert len(sites.keyed.seen) + len(sites.plain.seen) == before


def test_plaintext_in_a_tunnel_that_carries_credentials_is_refused(
    egress_pool: Pool, sites: Sites
) -> None:
    host = f"keyed.example.test:{sites.keyed.port}"
    raw = (
        f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\nGET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n"
    )
    before = len(sites.keyed.seen)
    (answer,) = _raw(egress_pool, sites, raw)
    reason = (
        "the proxy adds keyed.example.test's credentials only inside TLS: send plain http:// "
        "requests to the proxy itself, not through CONNECT"
    )
    assert answer == [
        "HTTP/1.1 200 Connection established",
        f"HTTP/1.1 400 Bad Request: sandboxd egress: {reason}\r\nContent-Type: text/plain; "
        f"charset=utf-8\r\nContent-Length: {len(reason) + 18}\r\nX-Sandboxd-Egress: refused\r\n"
        f"Connection: close\r\n\r\nsandboxd egress: {reason}\n",
    ]
    assert sites.keyed.seen[before:] == []


def test_oversized_and_malformed_heads(egress_pool: Pool, sites: Sites) -> None:
    huge = "GET http://plain.example.test/ HTTP/1.1\r\n" + "X-Pad: " + "a" * 70_000 + "\r\n\r\n"
    answers = _raw(
        egress_pool,
        sites,
        huge,
        "GET http://plain.example.test/ HTTP/2.0\r\n\r\n",
        "GET  http://plain.example.test/ HTTP/1.1\r\n\r\n",
        "GET http://user@plain.example.test/ HTTP/1.1\r\n\r\n",
        "GET ftp://plain.example.test/ HTTP/1.1\r\n\r\n",
        "\x16\x03\x01\x01\x05hello\r\n\r\n",
    )
    assert [a[0] for a in answers] == [
        "HTTP/1.1 431 Request Header Fields Too Large: sandboxd egress: a request head over 65536 bytes",
        "HTTP/1.1 505 HTTP Version Not Supported: sandboxd egress: bad request: HTTP version b'HTTP/2.0' (the proxy speaks HTTP/1.0 and 1.1)",
        "HTTP/1.1 400 Bad Request: sandboxd egress: bad request: the request line is not METHOD SP TARGET SP VERSION",
        "HTTP/1.1 400 Bad Request: sandboxd egress: bad request: authority 'user@plain.example.test': user information is not accepted",
        "HTTP/1.1 400 Bad Request: sandboxd egress: bad request: request target 'ftp://plain.example.test/': not an http:// or https:// URL",
        "HTTP/1.1 400 Bad Request: sandboxd egress: bad request: the request line is not METHOD SP TARGET SP VERSION",
    ]  # fmt: skip


def test_a_slowloris_program_holds_only_its_own_connections(
    egress_pool: Pool, sites: Sites
) -> None:
    """One execution keeps its max_egress_connections connections to the proxy busy sending a
    head a byte at a time; another execution's egress meanwhile works, the slow connections get
    408 once HEAD_TIMEOUT_S passed since their first byte, and the pool's descriptors go back
    to what they were."""
    slow = textwrap.dedent(
        """
        import json, socket, time
        conns = [socket.create_connection(("127.0.0.1", 3128)) for _ in range(3)]
        head = b"GET http://plain.example.test/ HTTP/1.1\\r\\nX-Slow: " + b"a" * 200
        answers = []
        for i in range(len(head)):
            for c in conns:
                c.setblocking(False)
                try:
                    c.send(head[i:i + 1])
                except OSError:
                    pass
            time.sleep(0.1)
            done = []
            for c in conns:
                try:
                    data = c.recv(4096)
                except BlockingIOError:
                    continue
                done.append(c)
                answers.append(data.split(b"\\r\\n")[0].decode())
            conns = [c for c in conns if c not in done]
            if not conns:
                break
        print(json.dumps(answers))
        """
    )
    url = f"http://plain.example.test:{sites.plain.port}/echo"
    quick_code = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)"
    # The pool at rest, its egress loop running (made at the first egress execution).
    assert (
        run(egress_pool, Runtime.PYTHON, quick_code, sites.policy(), args=(url,)).stdout == b"200\n"
    )
    assert egress_pool.wait_until_ready(30)
    fds_before = _settled_fd_count()
    slow_result: dict[str, object] = {}

    def run_slow() -> None:
        slow_result["outcome"] = run(
            egress_pool,
            Runtime.PYTHON,
            slow,
            sites.policy(),
            limits=Limits(wall_time_ms=30_000, max_egress_connections=3),
        )

    thread = threading.Thread(target=run_slow)
    thread.start()
    time.sleep(2.0)  # the slow program is connected and trickling
    quick = run(egress_pool, Runtime.PYTHON, quick_code, sites.policy(), args=(url,))
    still_slow = thread.is_alive()
    thread.join(timeout=60)
    assert quick.verdict is Verdict.OK and quick.stdout == b"200\n", quick.stderr.decode()
    assert still_slow  # the quick one did not wait for the slow one
    outcome = slow_result["outcome"]
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()  # type: ignore[attr-defined]
    timeout = f"no complete request head within {HEAD_TIMEOUT_S:g} s"
    assert (
        json.loads(outcome.stdout)
        == [f"HTTP/1.1 408 Request Timeout: sandboxd egress: {timeout}"] * 3
    )  # type: ignore[attr-defined]
    (entry,) = outcome.egress  # type: ignore[attr-defined]
    assert (entry.host, entry.allowed, entry.connections, entry.reason) == ("", False, 3, timeout)
    assert egress_pool.wait_until_ready(30)
    assert _settled_fd_count() == fds_before


def _settled_fd_count() -> int:
    """This process's open descriptors once the pool's janitor closed what it was closing."""
    counts = []
    for _ in range(40):
        counts.append(len(os.listdir("/proc/self/fd")))
        if len(counts) >= 5 and len(set(counts[-5:])) == 1:
            break
        time.sleep(0.05)
    return counts[-1]


def test_the_cas_private_key_is_nowhere_in_the_jail(egress_pool: Pool, sites: Sites) -> None:
    """Every file the program can read (but the host's own read-only trees), its environment
    and every process's environ and cmdline hold the pool's CA certificate (the trust store
    must) but never the CA's private key, in any encoding; nor does the request frame the
    worker reads (all that enters its memory from the pool)."""
    ca = egress_pool._egress.ca  # type: ignore[union-attr]  # white box: the pool's own CA
    key = ca._key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    code = textwrap.dedent(
        """
        import json, os, sys
        needles = {name: bytes.fromhex(h) for name, h in json.loads(sys.argv[1]).items()}
        found, files, certificate = [], 0, []
        def look(where, data):
            for name, needle in needles.items():
                if name != "certificate" and needle in data:
                    found.append([name, where])
        # Everything but the host's own read-only trees (/usr, the interpreter's prefix: the
        # key was never on the host's disk) and the kernel's (/proc is read below).
        for top in ("/", "/dev/shm"):
            for directory, dirs, names in os.walk(top):
                if directory in ("/proc", "/dev", "/usr", "/opt/python", "/sys"):
                    dirs[:] = []
                    continue
                for name in names:
                    path = os.path.join(directory, name)
                    try:
                        with open(path, "rb") as f:
                            data = f.read(64 * 1024 * 1024)
                    except OSError:
                        continue
                    files += 1
                    look(path, data)
                    if needles["certificate"] in data:
                        certificate.append(path)
        look("environ", b"".join(f"{k}={v}".encode() for k, v in os.environ.items()))
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                for part in ("environ", "cmdline"):
                    try:
                        with open(f"/proc/{pid}/{part}", "rb") as f:
                            look(f"/proc/{pid}/{part}", f.read())
                    except OSError:
                        pass
        print(json.dumps({"found": found, "certificate": certificate, "files": files > 100}))
        """
    )
    needles = {
        "certificate": ca.cert_pem.splitlines()[1].encode().hex(),
        "scalar": scalar.hex(),
        "pkcs8": der.hex(),
        "pem marker": b"PRIVATE KEY-----".hex(),
    }
    outcome = run(
        egress_pool,
        Runtime.PYTHON,
        code,
        sites.policy(),
        args=(json.dumps(needles),),
        limits=Limits(wall_time_ms=60_000, cpu_time_ms=60_000),
    )
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()[-2000:]
    report = json.loads(outcome.stdout)
    assert report == {
        "found": [],
        "certificate": ["/etc/ssl/certs/ca-certificates.crt"],
        "files": True,
    }
    frame = b"".join(
        request_frame.encode(ExecutionRequest(Runtime.JAVASCRIPT, "x"), egress_ca_pem=ca.cert_pem)
    )
    header = json.loads(frame[4 : 4 + int.from_bytes(frame[:4], "big")])
    assert header["egress"]["ca_pem"] == ca.cert_pem
    for needle in (scalar, der, b"PRIVATE KEY"):
        assert needle not in frame


@pytest.mark.parametrize("runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"])
def test_the_secret_is_never_visible_to_the_program(
    egress_pool: Pool, sites: Sites, runtime: Runtime
) -> None:
    """Before and after the request the proxy puts the credential in, the program finds the
    secret nowhere it can look (environment, files, /proc, its own memory) and its output does
    not hold it; the destination got it."""
    url = f"https://keyed.example.test:{sites.keyed.port}/ingest"
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import json, os, sys, urllib.request
            secret = sys.argv[2][::-1].encode()  # given reversed: argv holds no copy of it
            def search():
                places = []
                env = b"".join(f"{k}={v}".encode() for k, v in os.environ.items())
                if secret in env:
                    places.append("environ")
                for directory, dirs, names in os.walk("/"):
                    if directory in ("/dev", "/usr", "/opt/python", "/sys") or directory.startswith(("/proc/self/", "/proc/thread-self/")):
                        dirs[:] = []
                        continue
                    for name in names:
                        path = os.path.join(directory, name)
                        try:
                            with open(path, "rb") as f:
                                if secret in f.read(16 * 1024 * 1024):
                                    places.append(path)
                        except OSError:
                            pass
                with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb") as mem:
                    hits = 0
                    for line in maps:
                        start, end = (int(x, 16) for x in line.split()[0].split("-"))
                        if "r" in line.split()[1]:
                            try:
                                mem.seek(start)
                                hits += mem.read(end - start).count(secret)
                            except (OSError, OverflowError, ValueError):
                                pass
                    # The needle is in memory (this program made it): the count must not grow.
                    places.append(f"memory:{hits}")
                return places
            before = search()
            request = urllib.request.Request(sys.argv[1], data=b'{"x": 1}',
                headers={"Authorization": "Bearer placeholder", "Content-Type": "application/json"})
            response = urllib.request.urlopen(request)
            body = response.read()
            headers = str(response.headers)
            after = search()
            print(json.dumps({"before": before, "after": after, "body": body.decode(),
                              "in_response": secret.decode() in headers + body.decode()}))
            """
        )
    else:
        code = textwrap.dedent(
            """
            const fs = require('fs');
            const path = require('path');
            const secret = [...process.argv[3]].reverse().join('');  // argv holds no copy
            const skip = new Set(['/dev', '/usr', '/opt/python', '/sys', '/proc']);
            function search() {
              const places = [];
              if (JSON.stringify(process.env).includes(secret)) places.push('environ');
              const look = (p) => {
                try { if (fs.readFileSync(p).includes(secret)) places.push(p); } catch {}
              };
              const walk = (dir) => {
                let entries = [];
                try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
                for (const e of entries) {
                  const p = path.join(dir, e.name);
                  if (e.isDirectory() && !skip.has(p)) walk(p);
                  else if (e.isFile()) look(p);
                }
              };
              walk('/');
              for (const pid of fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n))) {
                for (const part of ['environ', 'cmdline', 'status']) look(`/proc/${pid}/${part}`);
              }
              return places;
            }
            (async () => {
              const before = search();
              const r = await fetch(process.argv[2], { method: 'POST', body: '{"x": 1}',
                headers: { authorization: 'Bearer placeholder', 'content-type': 'application/json' } });
              const body = await r.text();
              const headers = JSON.stringify([...r.headers]);
              const after = search();
              console.log(JSON.stringify({ before, after, body,
                in_response: headers.includes(secret) || body.includes(secret) }));
            })();
            """
        )
    before = len(sites.keyed.seen)
    outcome = run(
        egress_pool,
        runtime,
        code,
        sites.policy(),
        args=(url, SECRET[::-1]),
        limits=Limits(wall_time_ms=60_000, cpu_time_ms=60_000),
    )
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()[-2000:]
    report = json.loads(outcome.stdout)
    if runtime is Runtime.PYTHON:
        # The only copies in memory are the ones the test handed in (argv) and the program
        # made of it; the same number before and after the proxied request.
        (memory_before,) = [p for p in report["before"] if p.startswith("memory:")]
        (memory_after,) = [p for p in report["after"] if p.startswith("memory:")]
        assert memory_before == memory_after
        report["before"].remove(memory_before)
        report["after"].remove(memory_after)
    assert report["before"] == report["after"] == []
    assert report["body"] == '{"stored": {"x": 1}}'
    assert report["in_response"] is False
    (request,) = sites.keyed.seen[before:]
    assert [v for n, v in request.headers if n.lower() == "authorization"] == [SECRET]
