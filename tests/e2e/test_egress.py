"""Egress through the real daemon: tenants with egress rules in the tenants file, the proxy's
names from --egress-hosts, the sites' CA from --egress-ca-bundle, local servers standing in
for SaaS APIs (tests/egress/servers.py).

    integrator  export.example.test (HTTPS, its own credential) and keyed.example.test (HTTPS,
                the credential the destination checks), 127.0.0.0/8 opened; api and plain too
    closed      the same names, no range opened: every one of them resolves to loopback
    other       plain.example.test only, no headers (tenant B of the isolation test)
    walled      no egress at all

The integration step end to end: a JavaScript handler fetches an XML export from one API,
turns it into JSON with a small parser, and posts it to a second API that checks the
credential the proxy added; neither credential is ever visible to the program.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from egress.servers import ApiServer, SiteCA
from egress.test_clients import CLIENTS, PLACEHOLDER, client_files
from soak import metrics

from sandboxd_client import Client, EgressEntry, InvalidRequest, Limits, Mode, Verdict

from .daemon import Daemon, start, tenants_file

EXPORT_SECRET = f"Bearer export-{secrets.token_hex(12)}"
INGEST_SECRET = f"Bearer ingest-{secrets.token_hex(12)}"


@dataclass
class World:
    daemon: Daemon
    keys: dict[str, str]
    tenants_path: str
    ca: SiteCA
    export: ApiServer
    keyed: ApiServer
    api: ApiServer
    plain: ApiServer

    def client(self, tenant: str) -> Client:
        return Client(self.daemon.address, api_key=self.keys[tenant])


def _header(host: str, name: str, value: str) -> str:
    return f'[[tenants.NAME.egress_headers]]\nhost = "{host}"\nname = "{name}"\nvalue = "{value}"\n'


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-e2e-egress-") as tmp:
        directory = Path(tmp)
        ca = SiteCA(directory)
        export = ApiServer(tls=ca.server_context(["export.example.test"]), credential=EXPORT_SECRET)
        keyed = ApiServer(tls=ca.server_context(["keyed.example.test"]), credential=INGEST_SECRET)
        api = ApiServer(tls=ca.server_context(["api.example.test"]))
        plain = ApiServer()
        hosts = directory / "hosts"
        hosts.write_text(
            "127.0.0.1 export.example.test keyed.example.test api.example.test "
            "plain.example.test\n169.254.169.254 metadata.example.test\n"
        )
        rules = [
            f"export.example.test:{export.port}",
            f"keyed.example.test:{keyed.port}",
            f"api.example.test:{api.port}",
            f"plain.example.test:{plain.port}",
            "metadata.example.test:80",
        ]
        path = str(directory / "tenants.toml")
        keys = tenants_file(
            path,
            {
                "integrator": {"egress": rules, "egress_private_ranges": ["127.0.0.0/8"]},
                "closed": {"egress": rules},
                "other": {
                    "egress": [f"plain.example.test:{plain.port}"],
                    "egress_private_ranges": ["127.0.0.0/8"],
                },
                "walled": {},
            },
        )
        # Headers (secrets) are written by hand, as an operator does: never on a command line.
        text = Path(path).read_text()
        integrator_headers = _header(
            "export.example.test", "Authorization", EXPORT_SECRET
        ) + _header("keyed.example.test", "Authorization", INGEST_SECRET)
        text = text.replace(
            "[tenants.closed]",
            integrator_headers.replace("NAME", "integrator") + "\n[tenants.closed]",
        )
        Path(path).write_text(text)
        daemon = start(
            [
                "--tenants", path,
                "--egress-hosts", str(hosts),
                "--egress-ca-bundle", str(ca.pem_path),
            ],
            warm=1,
        )  # fmt: skip
        try:
            yield World(daemon, keys, path, ca, export, keyed, api, plain)
        finally:
            assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
            for server in (export, keyed, api, plain):
                server.close()


INTEGRATION = textwrap.dedent(
    """
    // Take the export from the source API, turn it into JSON, post it to the destination.
    // Neither API's credential is here: the proxy adds them on the way out.
    function parseOrders(xml) {
      const orders = [];
      const order = /<order id="([^"]+)">([\\s\\S]*?)<\\/order>/g;
      for (const [, id, body] of xml.matchAll(order)) {
        const customer = /<customer>([^<]*)<\\/customer>/.exec(body)[1];
        const [, currency, total] = /<total currency="([A-Z]{3})">([0-9.]+)<\\/total>/.exec(body);
        orders.push({ id, customer, total: Number(total), currency });
      }
      return orders;
    }

    exports.handler = async (event, context) => {
      const source = await fetch(event.source);
      if (!source.ok) throw new Error(`the source answered ${source.status}`);
      const orders = parseOrders(await source.text());
      const sent = await fetch(event.destination, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer REPLACED-BY-PROXY' },
        body: JSON.stringify({ execution: context.executionId, orders }),
      });
      if (!sent.ok) throw new Error(`the destination answered ${sent.status}: ${await sent.text()}`);
      const answer = await sent.json();
      return { orders: orders.length, stored: answer.stored.orders.map((o) => o.id) };
    };
    """
)


def test_the_integration_step_end_to_end(world: World) -> None:
    event = {
        "source": f"https://export.example.test:{world.export.port}/export.xml",
        "destination": f"https://keyed.example.test:{world.keyed.port}/ingest",
    }
    ingest_before = len(world.keyed.stored)
    with world.client("integrator") as client:
        result = client.invoke(INTEGRATION, event, runtime="javascript")
    assert result.verdict is Verdict.OK, result.stderr.decode()
    assert result.result_value() == {"orders": 2, "stored": ["A-1", "A-2"]}
    (document,) = world.keyed.stored[ingest_before:]
    assert document == {
        "execution": result.execution_id,
        "orders": [
            {"id": "A-1", "customer": "Ada", "total": 12.5, "currency": "EUR"},
            {"id": "A-2", "customer": "Grace", "total": 7.25, "currency": "EUR"},
        ],
    }
    # Each destination got its own credential and nothing else's.
    assert world.export.headers_seen("authorization")[-1:] == [EXPORT_SECRET]
    assert world.keyed.headers_seen("authorization")[-1:] == [INGEST_SECRET]
    everything = result.stdout + result.stderr + result.result
    assert EXPORT_SECRET.encode() not in everything and INGEST_SECRET.encode() not in everything
    summary = {(e.host, e.port): e for e in result.egress}
    assert set(summary) == {
        ("export.example.test", world.export.port),
        ("keyed.example.test", world.keyed.port),
    }
    for entry in summary.values():
        assert entry.allowed and entry.connections == 1 and not entry.reason
        assert entry.sent_bytes > 0 and entry.received_bytes > 0
    logged = world.daemon.wait_for_log_entry("execution finished", execution_id=result.execution_id)
    assert sorted(e["host"] for e in logged["egress"]) == [
        "export.example.test",
        "keyed.example.test",
    ]
    assert EXPORT_SECRET not in json.dumps(logged) and INGEST_SECRET not in json.dumps(logged)


@pytest.mark.parametrize("name", list(CLIENTS))
def test_every_client_through_the_daemon(world: World, name: str) -> None:
    """The clients of tests/egress/test_clients.py, through the daemon: the tenant's
    credential reaches keyed, TLS to a host without headers passes through."""
    runtime, code = CLIENTS[name]
    urls = (
        f"http://plain.example.test:{world.plain.port}",
        f"https://keyed.example.test:{world.keyed.port}",
        f"https://api.example.test:{world.api.port}",
    )
    before = len(world.keyed.seen)
    with world.client("integrator") as client:
        result = client.execute(
            runtime.value,
            textwrap.dedent(code % {"placeholder": PLACEHOLDER}),
            args=(*urls, name),
            files=client_files(name, world.ca.pem_path.read_bytes()),
            limits=Limits(wall_time_ms=20_000),
        )
    assert result.verdict is Verdict.OK, result.stderr.decode()[-2000:]
    seen = json.loads(result.stdout)
    assert seen["plain"] == f"/echo?c={name}"
    if name != "fetch":
        assert seen["api"] == f"/echo?c={name}"
    for request in world.keyed.seen[before:]:
        assert [v for n, v in request.headers if n.lower() == "authorization"] == [INGEST_SECRET]
    assert len(world.keyed.seen) > before
    assert {e.host for e in result.egress} >= {"plain.example.test", "keyed.example.test"}


PY_PROBE = textwrap.dedent(
    """
    import errno, json, socket, sys, urllib.error, urllib.request
    out = {}
    for url in sys.argv[1:]:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                out[url] = [r.status]
        except urllib.error.HTTPError as e:
            out[url] = [e.code, e.read().decode()]
        except Exception as e:
            out[url] = ["error", str(getattr(e, "reason", e))]
    try:
        socket.create_connection(("93.184.216.34", 443), timeout=5)
        out["raw"] = "CONNECTED"
    except OSError as e:
        out["raw"] = errno.errorcode[e.errno]
    try:
        socket.getaddrinfo("plain.example.test", 80)
        out["dns"] = "RESOLVED"
    except socket.gaierror as e:
        out["dns"] = e.errno
    print(json.dumps(out))
    """
)


def test_refusals_and_what_the_result_says(world: World) -> None:
    plain = f"http://plain.example.test:{world.plain.port}/echo"
    evil = "http://evil.example.test/"
    metadata = "http://metadata.example.test/latest/"
    with world.client("closed") as client:
        result = client.execute("python", PY_PROBE, args=(plain, evil, metadata))
    assert result.verdict is Verdict.OK, result.stderr.decode()
    import socket as host_socket

    loopback = "resolves only to refused addresses: 127.0.0.1 (loopback)"
    assert json.loads(result.stdout) == {
        plain: [403, f"sandboxd egress: plain.example.test {loopback}\n"],
        evil: [403, "sandboxd egress: evil.example.test:80 is not in this execution's egress rules\n"],
        metadata: [
            403,
            "sandboxd egress: metadata.example.test resolves only to refused addresses: "
            "169.254.169.254 (link-local)\n",
        ],
        "raw": "ENETUNREACH",
        "dns": host_socket.EAI_NONAME,
    }  # fmt: skip
    assert result.egress == (
        EgressEntry("plain.example.test", world.plain.port, False, 1, 0, 0, f"plain.example.test {loopback}"),
        EgressEntry("evil.example.test", 80, False, 1, 0, 0, "evil.example.test:80 is not in this execution's egress rules"),
        EgressEntry("metadata.example.test", 80, False, 1, 0, 0, "metadata.example.test resolves only to refused addresses: 169.254.169.254 (link-local)"),
    )  # fmt: skip


def test_metrics_count_connections_and_bytes_by_decision(world: World) -> None:
    assert world.daemon.metrics_port is not None
    before = metrics.samples(
        metrics.scrape(world.daemon.metrics_port), "sandboxd_egress_connections_total"
    )
    url = f"http://plain.example.test:{world.plain.port}/echo"
    with world.client("integrator") as client:
        ok = client.execute("python", PY_PROBE, args=(url, "http://evil.example.test/"))
    assert ok.verdict is Verdict.OK, ok.stderr.decode()
    text = metrics.scrape(world.daemon.metrics_port)
    after = metrics.samples(text, "sandboxd_egress_connections_total")

    def delta(decision: str) -> float:
        key = frozenset({("decision", decision)})
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert (delta("allowed"), delta("refused")) == (1.0, 1.0)
    sent = metrics.samples(text, "sandboxd_egress_bytes_total")
    assert sent[frozenset({("direction", "sent"), ("decision", "allowed")})] > 0
    assert sent[frozenset({("direction", "received"), ("decision", "allowed")})] > 0


def test_the_byte_limit_from_the_request_cuts_an_upload(world: World) -> None:
    code = textwrap.dedent(
        """
        import sys, urllib.request
        try:
            urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"u" * (1 << 22)))
            print("uploaded")
        except Exception as e:
            print("cut:", type(e).__name__)
        """
    )
    url = f"http://plain.example.test:{world.plain.port}/upload"
    with world.client("integrator") as client:
        result = client.execute(
            "python", code, args=(url,), limits=Limits(max_egress_sent_bytes=100_000)
        )
    assert result.verdict is Verdict.OK, result.stderr.decode()
    assert result.stdout.startswith(b"cut: ")
    (entry,) = result.egress
    assert (entry.host, entry.allowed, entry.sent_bytes) == ("plain.example.test", True, 100_000)
    assert entry.reason == "cut: the execution's max_egress_sent_bytes (100000) is used up"


def test_tenant_a_rules_never_apply_to_tenant_b(world: World) -> None:
    """Alternating executions of two tenants on the same daemon: B never reaches what only A
    may, and B's requests never carry A's credential."""
    keyed = f"https://keyed.example.test:{world.keyed.port}/ingest"
    plain = f"http://plain.example.test:{world.plain.port}/echo"
    code = textwrap.dedent(
        """
        import json, sys, urllib.error, urllib.request
        out = {}
        for url in sys.argv[1:]:
            try:
                data = b"{}" if url.endswith("/ingest") else None
                with urllib.request.urlopen(urllib.request.Request(url, data=data)) as r:
                    out[url] = json.loads(r.read())
            except urllib.error.HTTPError as e:
                out[url] = e.code
            except urllib.error.URLError as e:
                out[url] = str(e.reason)
        print(json.dumps(out))
        """
    )
    with world.client("integrator") as a, world.client("other") as b:
        for _ in range(3):
            seen_a = json.loads(a.execute("python", code, args=(keyed, plain)).stdout)
            assert seen_a[keyed] == {"stored": {}}
            seen_b = json.loads(b.execute("python", code, args=(keyed, plain)).stdout)
            assert seen_b[keyed] == (
                f"Tunnel connection failed: 403 Forbidden: sandboxd egress: keyed.example.test:"
                f"{world.keyed.port} is not in this execution's egress rules"
            )
            assert "Authorization" not in seen_b[plain]["headers"]
            assert INGEST_SECRET not in json.dumps(seen_b)


def test_a_request_narrows_the_tenants_rules(world: World) -> None:
    plain = f"plain.example.test:{world.plain.port}"
    api = f"api.example.test:{world.api.port}"
    with world.client("integrator") as client:
        result = client.execute(
            "python", PY_PROBE, args=(f"http://{plain}/echo", f"http://{api}/"), egress=[plain]
        )
        assert result.verdict is Verdict.OK
        seen = json.loads(result.stdout)
        assert seen[f"http://{plain}/echo"] == [200]
        assert seen[f"http://{api}/"] == [
            403,
            f"sandboxd egress: {api} is not in this execution's egress rules\n",
        ]
        with pytest.raises(InvalidRequest) as caught:
            client.execute("python", "", egress=["evil.example.test:443"])
        assert [(v.field, v.description) for v in caught.value.violations] == [
            ("egress[0]", "'evil.example.test:443' is not within the tenant's egress rules")
        ]
    with world.client("walled") as walled, pytest.raises(InvalidRequest) as caught:
        walled.execute("python", "", egress=[plain])
    assert caught.value.violations[0].description == (
        "tenant 'walled' has no egress rules: nothing can be reached"
    )


def test_a_tenant_without_egress_has_no_proxy(world: World) -> None:
    code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 3128))\nexcept OSError as e:\n    print(e.errno)\n"
    with world.client("walled") as client:
        result = client.execute("python", code)
    assert result.stdout == b"111\n" and result.egress == ()


def test_an_async_job_gets_its_tenants_egress(world: World) -> None:
    url = f"http://plain.example.test:{world.plain.port}/echo"
    with world.client("integrator") as client:
        execution_id = client.submit("python", PY_PROBE, args=(url,))
        execution = client.wait(execution_id, timeout_s=60)
    assert execution.result is not None
    assert json.loads(execution.result.stdout)[url] == [200]
    (entry,) = execution.result.egress
    assert (entry.host, entry.allowed, entry.connections) == ("plain.example.test", True, 1)


def test_a_reload_gives_a_tenant_egress_for_its_next_execution(world: World) -> None:
    url = f"http://plain.example.test:{world.plain.port}/echo"
    path = Path(world.tenants_path)
    original = path.read_text()
    try:
        walled = "[tenants.walled]\nkey_sha256"
        assert walled in original
        path.write_text(
            original.replace(
                walled,
                f'[tenants.walled]\negress = ["plain.example.test:{world.plain.port}"]\n'
                'egress_private_ranges = ["127.0.0.0/8"]\nkey_sha256',
            )
        )
        _reload(world.daemon)
        with world.client("walled") as client:
            result = client.execute("python", PY_PROBE, args=(url,))
        assert json.loads(result.stdout)[url] == [200]
    finally:
        path.write_text(original)
        _reload(world.daemon)


def _reload(daemon: Daemon) -> None:
    """SIGHUP, and wait for its `tenants reloaded` line, which must name `walled` changed."""
    seen = daemon.log_messages().count("tenants reloaded")
    os.kill(daemon.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while daemon.log_messages().count("tenants reloaded") == seen:
        assert time.monotonic() < deadline, "".join(daemon.raw_stderr[-10:])
        time.sleep(0.05)
    reloaded = [e for e in daemon.logs if e.get("msg") == "tenants reloaded"][-1]
    assert reloaded["changed"] == ["walled"]


def test_handler_mode_is_covered_too(world: World) -> None:
    """HANDLER mode in Python: the same proxy variables in the handler's process."""
    code = "import os\ndef handler(event, context):\n    return os.environ['HTTPS_PROXY']\n"
    with world.client("integrator") as client:
        result = client.execute("python", code, mode=Mode.HANDLER)
    assert result.result_value() == "http://127.0.0.1:3128"
