"""What the proxy refuses, and how the program and the result see it: a host outside the rules
(403 with the reason), an allowed name that resolves to loopback or to the metadata address
(refused unless the range is opened), addresses asked for directly, the byte limits cutting an
upload and a download, the connection limit, no egress at all (the port is refused), raw
connects and DNS inside the sandbox (nothing), and one tenant's rules and headers never
reaching the next execution."""

from __future__ import annotations

import json
import socket
import textwrap

import pytest

from sandboxd_pool import InvalidRequest, Limits, Pool, PoolConfig, Runtime, Verdict
from sandboxd_pool.egress import EgressHeader, EgressPolicy
from sandboxd_pool.egress.ledger import MAX_DESTINATIONS, OTHER_DESTINATIONS
from sandboxd_pool.egress.service import OVER_LIMIT_ANSWERS

from .conftest import SECRET, Sites, run

RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)

# GET (or POST) each URL given as an argument through the proxy; print [status, body] per URL,
# or ["error", what the client said].
PY_GET = textwrap.dedent(
    """
    import json, sys, urllib.error, urllib.request
    out = {}
    for url in sys.argv[1:]:
        try:
            with urllib.request.urlopen(url, timeout=15) as r:
                out[url] = [r.status, r.read().decode()]
        except urllib.error.HTTPError as e:
            out[url] = [e.code, e.read().decode()]
        except Exception as e:
            out[url] = ["error", str(getattr(e, "reason", e))]
    print(json.dumps(out))
    """
)
JS_GET = textwrap.dedent(
    """
    (async () => {
      const out = {};
      for (const url of process.argv.slice(2)) {
        try {
          const r = await fetch(url);
          out[url] = [r.status, await r.text()];
        } catch (e) {
          out[url] = ['error', String(e.cause ? e.cause.message : e.message)];
        }
      }
      console.log(JSON.stringify(out));
    })();
    """
)


def _get(
    pool: Pool, runtime: Runtime, policy: EgressPolicy | None, *urls: str
) -> dict[str, list[object]]:
    code = PY_GET if runtime is Runtime.PYTHON else JS_GET
    outcome = run(pool, runtime, code, policy, args=urls)
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()[-2000:]
    result: dict[str, list[object]] = json.loads(outcome.stdout)
    return result | {"summary": [e for e in outcome.egress]}  # type: ignore[dict-item]


@RUNTIMES
def test_a_host_outside_the_rules_is_refused_with_the_reason(
    egress_pool: Pool, sites: Sites, runtime: Runtime
) -> None:
    plain = f"http://plain.example.test:{sites.plain.port}/echo"
    other = f"http://evil.example.test:{sites.plain.port}/echo"
    wrong_port = f"http://plain.example.test:{sites.api.port}/echo"
    tunnel = "https://evil.example.test/steal"
    before = len(sites.plain.seen)
    seen = _get(egress_pool, runtime, sites.policy(), plain, other, wrong_port, tunnel)
    assert seen[plain][0] == 200
    rule = "is not in this execution's egress rules"
    assert seen[other] == [403, f"sandboxd egress: evil.example.test:{sites.plain.port} {rule}\n"]
    assert seen[wrong_port] == [
        403,
        f"sandboxd egress: plain.example.test:{sites.api.port} {rule}\n",
    ]
    # A refused CONNECT: the status line carries the reason (what urllib and fetch report).
    if runtime is Runtime.PYTHON:
        assert seen[tunnel] == [
            "error",
            f"Tunnel connection failed: 403 Forbidden: sandboxd egress: evil.example.test:443 {rule}",
        ]
    else:
        assert seen[tunnel] == [
            "error",
            f"egress proxy refused evil.example.test:443: sandboxd egress: evil.example.test:443 {rule}",
        ]
    assert len(sites.plain.seen) == before + 1  # only the allowed request arrived
    summary = {(e.host, e.port): e for e in seen["summary"]}  # type: ignore[attr-defined]
    assert summary["plain.example.test", sites.plain.port].allowed
    for host, port in (
        ("evil.example.test", sites.plain.port),
        ("plain.example.test", sites.api.port),
        ("evil.example.test", 443),
    ):
        entry = summary[host, port]
        assert (entry.allowed, entry.connections, entry.sent_bytes, entry.received_bytes) == (
            False,
            1,
            0,
            0,
        )
        assert entry.reason == f"{host}:{port} {rule}"


@RUNTIMES
def test_loopback_and_metadata_addresses_are_refused_unless_opened(
    egress_pool: Pool, sites: Sites, runtime: Runtime
) -> None:
    port = sites.plain.port
    by_name = f"http://plain.example.test:{port}/echo"
    metadata = "http://metadata.example.test/latest/meta-data/"
    metadata_ip = "http://169.254.169.254/latest/meta-data/"
    loopback_ip = f"http://127.0.0.1:{port}/echo"
    mixed = f"http://mixed.example.test:{port}/echo"
    rules = (
        f"plain.example.test:{port}",
        "metadata.example.test:80",
        "169.254.169.254:80",
        f"mixed.example.test:{port}",
    )
    urls = (by_name, metadata, metadata_ip, loopback_ip, mixed)

    closed = _get(egress_pool, runtime, sites.policy(*rules, private=()), *urls)
    loopback = "resolves only to refused addresses: 127.0.0.1 (loopback)"
    link_local = "resolves only to refused addresses: 169.254.169.254 (link-local)"
    assert closed[by_name] == [403, f"sandboxd egress: plain.example.test {loopback}\n"]
    assert closed[metadata] == [403, f"sandboxd egress: metadata.example.test {link_local}\n"]
    assert closed[metadata_ip] == [403, f"sandboxd egress: 169.254.169.254 {link_local}\n"]
    # A loopback address goes straight to the sandbox's own loopback (NO_PROXY), where nothing
    # listens: the host's is out of reach either way (the proxy's refusal of it by address is
    # test_an_address_in_connect_is_checked_like_a_name).
    direct_refusal = (
        "[Errno 111] Connection refused"
        if runtime is Runtime.PYTHON
        else f"connect ECONNREFUSED 127.0.0.1:{port}"
    )
    assert closed[loopback_ip] == ["error", direct_refusal]
    assert closed[mixed] == [
        403,
        "sandboxd egress: mixed.example.test resolves only to refused addresses: "
        "169.254.169.254 (link-local), 127.0.0.1 (loopback)\n",
    ]

    # 127.0.0.0/8 opened for the tenant: loopback is reached, link-local still refused, and a
    # name with both addresses goes to the allowed one only.
    opened = _get(egress_pool, runtime, sites.policy(*rules), *urls)
    assert opened[by_name][0] == 200
    assert opened[loopback_ip] == closed[loopback_ip]
    assert json.loads(str(opened[mixed][1]))["headers"]["Host"] == f"mixed.example.test:{port}"
    assert opened[metadata] == closed[metadata]
    assert opened[metadata_ip] == closed[metadata_ip]


def test_an_address_in_connect_is_checked_like_a_name(egress_pool: Pool, sites: Sites) -> None:
    """CONNECT straight to an address (no name): the rule must name it, and the address check
    still applies (the program cannot reach loopback by writing it)."""
    code = textwrap.dedent(
        """
        import json, socket, sys
        out = {}
        for target in sys.argv[1:]:
            s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
            s.sendall(f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n".encode())
            out[target] = s.recv(4096).decode().split("\\r\\n")[0]
            s.close()
        print(json.dumps(out))
        """
    )
    port = sites.api.port
    targets = (
        f"127.0.0.1:{port}",
        "169.254.169.254:80",
        f"[::ffff:127.0.0.1]:{port}",
        f"[::1]:{port}",
    )
    policy = sites.policy(
        f"127.0.0.1:{port}",
        "169.254.169.254:80",
        f"[::ffff:127.0.0.1]:{port}",
        f"[::1]:{port}",
        private=(),
    )
    outcome = run(egress_pool, Runtime.PYTHON, code, policy, args=targets)
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    refused = "HTTP/1.1 403 Forbidden: sandboxd egress:"
    assert json.loads(outcome.stdout) == {
        f"127.0.0.1:{port}": f"{refused} 127.0.0.1 resolves only to refused addresses: 127.0.0.1 (loopback)",
        "169.254.169.254:80": f"{refused} 169.254.169.254 resolves only to refused addresses: 169.254.169.254 (link-local)",
        f"[::ffff:127.0.0.1]:{port}": f"{refused} ::ffff:127.0.0.1 resolves only to refused addresses: ::ffff:127.0.0.1 (IPv4-mapped 127.0.0.1: loopback)",
        f"[::1]:{port}": f"{refused} ::1 resolves only to refused addresses: ::1 (loopback)",
    }  # fmt: skip


def test_no_egress_policy_means_the_port_is_refused(egress_pool: Pool, sites: Sites) -> None:
    code = textwrap.dedent(
        """
        import errno, json, os, socket
        out = {"env": sorted(k for k in os.environ if "proxy" in k.lower() or "CERT" in k or "CA_BUNDLE" in k)}
        try:
            socket.create_connection(("127.0.0.1", 3128), timeout=5)
            out["connect"] = "CONNECTED"
        except OSError as e:
            out["connect"] = errno.errorcode[e.errno]
        print(json.dumps(out))
        """
    )
    outcome = run(egress_pool, Runtime.PYTHON, code, None)
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert json.loads(outcome.stdout) == {"env": [], "connect": "ECONNREFUSED"}
    assert outcome.egress == ()


@RUNTIMES
def test_raw_connects_and_dns_fail_with_egress_on(
    egress_pool: Pool, sites: Sites, runtime: Runtime
) -> None:
    """The proxy is the only way out: with egress allowed to the sites, a direct connect to
    their address (the host's loopback is not the sandbox's) or to any other address fails,
    and names do not resolve inside."""
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import errno, json, socket, sys
            out = {}
            for host, port in (("127.0.0.1", int(sys.argv[1])), ("169.254.169.254", 80), ("8.8.8.8", 53)):
                try:
                    socket.create_connection((host, port), timeout=5)
                    out[host] = "CONNECTED"
                except OSError as e:
                    out[host] = errno.errorcode[e.errno]
            try:
                out["dns"] = socket.getaddrinfo("api.example.test", 443)
            except socket.gaierror as e:
                out["dns"] = e.errno
            print(json.dumps(out))
            """
        )
        dns_failure: object = socket.EAI_NONAME
    else:
        code = textwrap.dedent(
            """
            const net = require('net');
            const dns = require('dns');
            const out = {};
            const probe = (host, port) => new Promise((done) => {
              const s = net.connect({ host, port });
              s.setTimeout(5000, () => { s.destroy(); out[host] = 'TIMEOUT'; done(); });
              s.on('connect', () => { s.destroy(); out[host] = 'CONNECTED'; done(); });
              s.on('error', (e) => { out[host] = e.code; done(); });
            });
            (async () => {
              await probe('127.0.0.1', Number(process.argv[2]));
              await probe('169.254.169.254', 80);
              await probe('8.8.8.8', 53);
              out.dns = await new Promise((r) => dns.lookup('api.example.test', (e, a) => r(e ? e.code : a)));
              console.log(JSON.stringify(out));
            })();
            """
        )
        dns_failure = "ENOTFOUND"
    before = len(sites.api.seen)
    outcome = run(egress_pool, runtime, code, sites.policy(), args=(str(sites.api.port),))
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert json.loads(outcome.stdout) == {
        "127.0.0.1": "ECONNREFUSED",  # the sandbox's own loopback: nothing listens there
        "169.254.169.254": "ENETUNREACH",
        "8.8.8.8": "ENETUNREACH",
        "dns": dns_failure,
    }
    assert len(sites.api.seen) == before
    assert outcome.egress == ()  # nothing went through the proxy


@RUNTIMES
def test_the_sent_bytes_limit_cuts_a_large_upload(
    egress_pool: Pool, sites: Sites, runtime: Runtime
) -> None:
    limit = 64 * 1024
    size = 4 * 1024 * 1024
    url = f"http://plain.example.test:{sites.plain.port}/upload"
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import sys, urllib.request
            try:
                urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"u" * int(sys.argv[2])))
                print("uploaded")
            except Exception as e:
                print("cut:", type(e).__name__)
            """
        )
    else:
        code = textwrap.dedent(
            """
            fetch(process.argv[2], { method: 'POST', body: Buffer.alloc(Number(process.argv[3]), 117) })
              .then(() => console.log('uploaded'), (e) => console.log('cut:', e.name));
            """
        )
    before = len(sites.plain.seen)
    limits = Limits(wall_time_ms=20_000, max_egress_sent_bytes=limit)
    outcome = run(egress_pool, runtime, code, sites.policy(), args=(url, str(size)), limits=limits)
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert outcome.stdout.startswith(b"cut: ")
    (entry,) = outcome.egress
    assert (entry.host, entry.allowed, entry.sent_bytes) == ("plain.example.test", True, limit)
    assert entry.reason == f"cut: the execution's max_egress_sent_bytes ({limit}) is used up"
    # The server got at most the bytes the limit let through: never the whole body.
    assert all(len(s.body) < limit for s in sites.plain.seen[before:])


@RUNTIMES
def test_the_received_bytes_limit_cuts_a_large_download(
    egress_pool: Pool, sites: Sites, runtime: Runtime
) -> None:
    limit = 100_000
    url = f"https://api.example.test:{sites.api.port}/download?n={1024 * 1024}"
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import ssl, sys, urllib.request
            context = ssl.create_default_context(cafile="site-ca.pem")
            try:
                with urllib.request.urlopen(sys.argv[1], context=context) as r:
                    print("complete", len(r.read()))
            except Exception as e:
                print("cut:", type(e).__name__, len(getattr(e, "partial", b"")) < 1024 * 1024)
            """
        )
    else:
        code = textwrap.dedent(
            """
            const https = require('https');
            const fs = require('fs');
            let got = 0;
            https.get(process.argv[2], { ca: fs.readFileSync('site-ca.pem') }, (res) => {
              res.on('data', (d) => (got += d.length));
              res.on('end', () => console.log('complete', got));
              res.on('error', (e) => console.log('cut:', e.code, got < 1024 * 1024));
              res.on('aborted', () => {});
            }).on('error', (e) => console.log('cut:', e.code, got < 1024 * 1024));
            """
        )
    limits = Limits(wall_time_ms=20_000, max_egress_received_bytes=limit)
    files = {"site-ca.pem": sites.ca.pem_path.read_bytes()}
    outcome = run(
        egress_pool, runtime, code, sites.policy(), args=(url,), files=files, limits=limits
    )
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert outcome.stdout.startswith(b"cut: ") and outcome.stdout.endswith(
        b" true\n" if runtime is Runtime.JAVASCRIPT else b" True\n"
    )
    (entry,) = outcome.egress
    assert (entry.host, entry.received_bytes) == ("api.example.test", limit)
    assert entry.reason == f"cut: the execution's max_egress_received_bytes ({limit}) is used up"


def test_the_connection_limit(egress_pool: Pool, sites: Sites) -> None:
    code = textwrap.dedent(
        """
        import json, sys, urllib.error, urllib.request
        out = []
        for _ in range(4):  # urllib opens a connection per request
            try:
                out.append(urllib.request.urlopen(sys.argv[1]).status)
            except urllib.error.HTTPError as e:
                out.append([e.code, e.read().decode()])
        print(json.dumps(out))
        """
    )
    url = f"http://plain.example.test:{sites.plain.port}/echo"
    limits = Limits(wall_time_ms=20_000, max_egress_connections=2)
    outcome = run(egress_pool, Runtime.PYTHON, code, sites.policy(), args=(url,), limits=limits)
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    used_up = "the execution's max_egress_connections (2) is used up"
    refusal = [429, f"sandboxd egress: {used_up}\n"]
    assert json.loads(outcome.stdout) == [200, 200, refusal, refusal]
    allowed, refused = outcome.egress
    assert (allowed.allowed, allowed.connections) == (True, 2)
    assert (refused.allowed, refused.connections, refused.reason) == (False, 2, used_up)


def test_one_tenants_rules_and_headers_never_reach_the_next_execution(
    egress_pool: Pool, sites: Sites
) -> None:
    """Tenant A may reach keyed (with its credential) and plain (with a header of its own);
    tenant B only plain, without headers. Alternating executions on the same pool: B never
    reaches keyed and its requests to plain never carry A's header."""
    port = sites.plain.port
    a = EgressPolicy.parse(
        [f"keyed.example.test:{sites.keyed.port}", f"plain.example.test:{port}"],
        ["127.0.0.0/8"],
        [
            EgressHeader("keyed.example.test", "Authorization", "Bearer tenant-a-secret"),
            EgressHeader("plain.example.test", "X-Tenant-Secret", "tenant-a-only"),
        ],
    )
    b = EgressPolicy.parse([f"plain.example.test:{port}"], ["127.0.0.0/8"])
    echo = f"http://plain.example.test:{port}/echo"
    keyed = f"https://keyed.example.test:{sites.keyed.port}/echo"
    for _ in range(3):
        for runtime in (Runtime.PYTHON, Runtime.JAVASCRIPT):
            seen_a = _get(egress_pool, runtime, a, echo, keyed)
            assert json.loads(str(seen_a[echo][1]))["headers"]["X-Tenant-Secret"] == "tenant-a-only"
            assert (
                json.loads(str(seen_a[keyed][1]))["headers"]["Authorization"]
                == "Bearer tenant-a-secret"
            )
            seen_b = _get(egress_pool, runtime, b, echo, keyed)
            assert "X-Tenant-Secret" not in json.loads(str(seen_b[echo][1]))["headers"]
            assert seen_b[keyed][0] in (403, "error")
            assert (
                f"keyed.example.test:{sites.keyed.port} is not in this execution's egress rules"
                in str(seen_b[keyed][1])
            )


def test_a_connection_flood_stops_at_the_kernel(egress_pool: Pool, sites: Sites) -> None:
    """Past max_egress_connections the proxy answers 429 to OVER_LIMIT_ANSWERS more
    connections, then stops listening: further connects are refused by the kernel."""
    code = textwrap.dedent(
        """
        import errno, json, socket, sys
        out = []
        for n in range(30):
            try:
                s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
            except OSError as e:
                out.append(errno.errorcode[e.errno])
                continue
            s.sendall(f"GET {sys.argv[1]}?n={n} HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n".encode())
            out.append(s.recv(4096).split(b" ")[1].decode())
            s.close()
        print(json.dumps(out))
        """
    )
    url = f"http://plain.example.test:{sites.plain.port}/echo"
    limits = Limits(wall_time_ms=20_000, max_egress_connections=2)
    outcome = run(egress_pool, Runtime.PYTHON, code, sites.policy(), args=(url,), limits=limits)
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert json.loads(outcome.stdout) == ["200"] * 2 + ["429"] * OVER_LIMIT_ANSWERS + [
        "ECONNREFUSED"
    ] * (30 - 2 - OVER_LIMIT_ANSWERS)
    allowed, refused = outcome.egress
    assert (allowed.connections, refused.connections) == (2, OVER_LIMIT_ANSWERS)


def test_the_summary_is_bounded(egress_pool: Pool, sites: Sites) -> None:
    """A program naming a hundred hosts gets a hundred refusals, but the result holds at most
    MAX_DESTINATIONS entries: the rest are counted together."""
    code = textwrap.dedent(
        """
        import socket
        for n in range(100):
            s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
            s.sendall(f"GET http://host{n}.example.test/ HTTP/1.1\\r\\n\\r\\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 403 ")
            s.close()
        print("done")
        """
    )
    limits = Limits(wall_time_ms=30_000, max_egress_connections=100)
    outcome = run(egress_pool, Runtime.PYTHON, code, sites.policy(), limits=limits)
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert len(outcome.egress) == MAX_DESTINATIONS
    named, other = outcome.egress[:-1], outcome.egress[-1]
    assert [e.host for e in named] == [f"host{n}.example.test" for n in range(MAX_DESTINATIONS - 1)]
    assert (other.host, other.port, other.allowed) == (OTHER_DESTINATIONS, 0, False)
    assert other.connections == 100 - (MAX_DESTINATIONS - 1)
    assert other.reason == f"destinations past the first {MAX_DESTINATIONS - 1}, counted together"


def test_an_absolute_https_url_is_forwarded_over_tls_the_proxy_opens(
    egress_pool: Pool, sites: Sites
) -> None:
    """`GET https://...` sent in plain HTTP to the proxy (what some clients do): the proxy
    opens TLS to the destination, verifies it (the site's CA, from egress_ca_file) and adds
    the tenant's credential."""
    code = textwrap.dedent(
        """
        import socket, sys
        s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
        s.sendall(f"POST {sys.argv[1]} HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 2\\r\\n"
                  "Connection: close\\r\\n\\r\\n{}".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        print(data.split(b"\\r\\n")[0].decode(), data.rsplit(b"\\r\\n\\r\\n", 1)[1].decode())
        """
    )
    url = f"https://keyed.example.test:{sites.keyed.port}/ingest"
    before = len(sites.keyed.seen)
    outcome = run(egress_pool, Runtime.PYTHON, code, sites.policy(), args=(url,))
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()
    assert outcome.stdout == b'HTTP/1.1 200 OK {"stored": {}}\n'
    (request,) = sites.keyed.seen[before:]
    assert [v for n, v in request.headers if n.lower() == "authorization"] == [SECRET]
    assert [v for n, v in request.headers if n == "Host"] == [
        f"keyed.example.test:{sites.keyed.port}"
    ]


def test_a_pool_without_egress_keeps_the_loopback_down_and_refuses_policies(
    sites: Sites,
) -> None:
    config = PoolConfig(warm_workers_per_runtime=1, runtimes=(Runtime.PYTHON,), egress_proxy=False)
    code = textwrap.dedent(
        """
        import errno, fcntl, socket, struct
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s, 0x8913, struct.pack("16sh14x", b"lo", 0)))[1]
        try:
            socket.create_connection(("127.0.0.1", 3128), timeout=5)
        except OSError as e:
            print(bool(flags & 1), errno.errorcode[e.errno])
        """
    )
    with Pool(config) as pool:
        assert pool.wait_until_ready(60), pool.health()
        outcome = run(pool, Runtime.PYTHON, code, None)
        assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"False ENETUNREACH\n")
        with pytest.raises(InvalidRequest) as caught:
            run(pool, Runtime.PYTHON, "", sites.policy())
    assert str(caught.value) == (
        "egress: this pool serves no egress (PoolConfig.egress_proxy is off)"
    )
