"""Every client docs/egress.md lists works through the proxy, unchanged: Python's urllib.request,
http.client (a CONNECT tunnel through the proxy address it finds in HTTPS_PROXY) and requests;
Node's http, https, the global fetch and axios. Each program makes three requests:

    plain   http://plain.example.test/echo            forwarded as plain HTTP
    keyed   POST https://keyed.example.test/ingest     the proxy opens TLS (a leaf of the pool's
            with a placeholder Authorization           CA, which the jail's trust store holds)
                                                       and puts the tenant's credential in
    api     https://api.example.test/echo, trusting    the TLS passes through untouched: only
            only the site's own CA                     the site's real certificate verifies

and the test checks what the program read, what each server saw (the credential at keyed,
never the placeholder; nothing of it anywhere else) and the execution's egress summary.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from sandboxd_pool import Pool, Runtime, Verdict

from .conftest import SECRET, Sites, run
from .packages import node_axios, python_requests

PLACEHOLDER = "Bearer placeholder-the-proxy-replaces"

PY_URLLIB = """
import json, ssl, sys, urllib.request
plain, keyed, api, client = sys.argv[1:]
out = {}
out["plain"] = json.loads(urllib.request.urlopen(f"{plain}/echo?c={client}").read())["path"]
request = urllib.request.Request(
    f"{keyed}/ingest", data=json.dumps({"client": client}).encode(),
    headers={"Authorization": "%(placeholder)s", "Content-Type": "application/json"})
out["keyed"] = json.loads(urllib.request.urlopen(request).read())
site = ssl.create_default_context(cafile="site-ca.pem")
out["api"] = json.loads(urllib.request.urlopen(f"{api}/echo?c={client}", context=site).read())["path"]
print(json.dumps(out))
"""

PY_HTTP_CLIENT = """
import http.client, json, os, ssl, sys, urllib.parse
plain, keyed, api, client = sys.argv[1:]
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
def tunnel(url, context):  # CONNECT through the proxy, then TLS to the destination
    target = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=context)
    conn.set_tunnel(target.hostname, target.port)
    return conn
out = {}
conn = http.client.HTTPConnection(proxy.hostname, proxy.port)  # absolute-form
conn.request("GET", f"{plain}/echo?c={client}")
out["plain"] = json.loads(conn.getresponse().read())["path"]
conn = tunnel(keyed, ssl.create_default_context())
conn.request("POST", "/ingest", body=json.dumps({"client": client}),
             headers={"Authorization": "%(placeholder)s", "Content-Type": "application/json"})
out["keyed"] = json.loads(conn.getresponse().read())
conn = tunnel(api, ssl.create_default_context(cafile="site-ca.pem"))
conn.request("GET", f"/echo?c={client}")
response = conn.getresponse()
out["issuer"] = dict(x[0] for x in conn.sock.getpeercert()["issuer"])["commonName"]
out["api"] = json.loads(response.read())["path"]
print(json.dumps(out))
"""

PY_REQUESTS = """
import json, sys
import requests
plain, keyed, api, client = sys.argv[1:]
out = {}
out["plain"] = requests.get(f"{plain}/echo?c={client}").json()["path"]
with requests.Session() as session:  # one kept-alive tunnel for two requests
    for n in range(2):
        r = session.post(f"{keyed}/ingest", json={"client": client, "n": n},
                         headers={"Authorization": "%(placeholder)s"})
        out[f"keyed{n}"] = r.json()
out["api"] = requests.get(f"{api}/echo?c={client}", verify="site-ca.pem").json()["path"]
print(json.dumps(out))
"""

JS_HTTP_HTTPS = """
const http = require('http');
const https = require('https');
const fs = require('fs');
const [plain, keyed, api, client] = process.argv.slice(2);
function call(mod, url, options, body) {
  return new Promise((resolve, reject) => {
    const req = mod.request(url, options, (res) => {
      const socket = res.socket;
      const issuer = socket.getPeerCertificate ? socket.getPeerCertificate().issuer.CN : null;
      let data = '';
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(data), issuer }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
(async () => {
  const out = {};
  out.plain = (await call(http, `${plain}/echo?c=${client}`, {})).body.path;
  const keyedOptions = { method: 'POST', headers: { authorization: '%(placeholder)s',
    'content-type': 'application/json' } };
  out.keyed = (await call(https, `${keyed}/ingest`, keyedOptions, JSON.stringify({ client }))).body;
  const site = await call(https, `${api}/echo?c=${client}`, { ca: fs.readFileSync('site-ca.pem') });
  out.api = site.body.path;
  out.issuer = site.issuer;
  console.log(JSON.stringify(out));
})();
"""

JS_FETCH = """
const [plain, keyed, api, client] = process.argv.slice(2);
(async () => {
  const out = {};
  out.plain = (await (await fetch(`${plain}/echo?c=${client}`)).json()).path;
  for (const n of [0, 1]) {
    const response = await fetch(`${keyed}/ingest`, { method: 'POST',
      headers: { authorization: '%(placeholder)s', 'content-type': 'application/json' },
      body: JSON.stringify({ client, n }) });
    out['keyed' + n] = await response.json();
  }
  console.log(JSON.stringify(out));
})();
"""

JS_AXIOS = """
const axios = require('axios');
const https = require('https');
const fs = require('fs');
const [plain, keyed, api, client] = process.argv.slice(2);
(async () => {
  const out = {};
  out.plain = (await axios.get(`${plain}/echo?c=${client}`)).data.path;
  out.keyed = (await axios.post(`${keyed}/ingest`, { client },
    { headers: { Authorization: '%(placeholder)s' } })).data;
  const site = new https.Agent({ ca: fs.readFileSync('site-ca.pem') });
  out.api = (await axios.get(`${api}/echo?c=${client}`, { httpsAgent: site })).data.path;
  console.log(JSON.stringify(out));
})();
"""

CLIENTS = {
    "urllib": (Runtime.PYTHON, PY_URLLIB),
    "http.client": (Runtime.PYTHON, PY_HTTP_CLIENT),
    "requests": (Runtime.PYTHON, PY_REQUESTS),
    "node-http-https": (Runtime.JAVASCRIPT, JS_HTTP_HTTPS),
    "fetch": (Runtime.JAVASCRIPT, JS_FETCH),
    "axios": (Runtime.JAVASCRIPT, JS_AXIOS),
}


def client_files(client: str, site_ca_pem: bytes) -> dict[str, bytes]:
    """The request files a client's program needs: the site's CA (for the passthrough
    request), and the client's package when it is not built in."""
    files = {"site-ca.pem": site_ca_pem}
    if client == "requests":
        files.update(python_requests())
    elif client == "axios":
        files.update(node_axios())
    return files


@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_through_the_proxy(egress_pool: Pool, sites: Sites, client: str) -> None:
    runtime, code = CLIENTS[client]
    urls = (
        f"http://plain.example.test:{sites.plain.port}",
        f"https://keyed.example.test:{sites.keyed.port}",
        f"https://api.example.test:{sites.api.port}",
    )
    keyed_before = len(sites.keyed.seen)
    outcome = run(
        egress_pool,
        runtime,
        textwrap.dedent(code % {"placeholder": PLACEHOLDER}),
        sites.policy(),
        files=client_files(client, sites.ca.pem_path.read_bytes()),
        args=(*urls, client),
    )
    assert outcome.verdict is Verdict.OK, outcome.stderr.decode()[-3000:]
    seen = json.loads(outcome.stdout)

    expected: dict[str, object] = {"plain": f"/echo?c={client}"}
    keyed_documents: list[dict[str, object]] = [{"client": client}]
    if client in ("requests", "fetch"):
        keyed_documents = [{"client": client, "n": 0}, {"client": client, "n": 1}]
        expected |= {f"keyed{n}": {"stored": d} for n, d in enumerate(keyed_documents)}
    else:
        expected["keyed"] = {"stored": keyed_documents[0]}
    if client != "fetch":  # Node 20's fetch takes no CA of its own without undici's package
        expected["api"] = f"/echo?c={client}"
    if client in ("http.client", "node-http-https"):
        expected["issuer"] = "egress test site ca"  # the site's own certificate: passed through
    assert seen == expected

    # The destination got the tenant's credential on every request, never the placeholder.
    requests_at_keyed = sites.keyed.seen[keyed_before:]
    assert [json.loads(s.body) for s in requests_at_keyed] == keyed_documents
    for request in requests_at_keyed:
        assert [v for n, v in request.headers if n.lower() == "authorization"] == [SECRET]
    assert SECRET.encode() not in outcome.stdout + outcome.stderr

    summary = {(e.host, e.allowed): e for e in outcome.egress}
    hosts = {("plain.example.test", True), ("keyed.example.test", True)}
    if client != "fetch":
        hosts.add(("api.example.test", True))
    assert set(summary) == hosts
    for entry in summary.values():
        assert entry.reason == ""
        assert entry.sent_bytes > 0 and entry.received_bytes > 0
    if client == "requests":  # one kept-alive tunnel carried both requests of the session
        assert summary["keyed.example.test", True].connections == 1
