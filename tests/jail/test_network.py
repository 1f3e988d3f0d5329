"""Hostile programs against the network boundary (SECURITY.md, "Threat model": no network
unless egress is given; docs/architecture.md, the jail: a net namespace holding only its own
`lo`, up, where the egress proxy's port 3128 is refused for a request without egress; seccomp:
socket families other than AF_UNIX/INET/INET6 fail with EAFNOSUPPORT).

The test process starts real TCP and UDP servers on the host (loopback and every other local
IPv4 address) and proves the sandbox cannot reach them: the program sees the connect fail (its
127.0.0.1 and ::1 are its own namespace's, where nothing listens: refused, and a datagram goes
nowhere) and the servers see nothing.
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest
from helpers import run

from sandboxd_pool import Limits, Outcome, Pool, Runtime, Verdict
from sandboxd_pool.jail.network import PROXY_PORT

LIMITS = Limits(wall_time_ms=8_000)
RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)
METADATA = "169.254.169.254"  # the cloud metadata service
PUBLIC_DNS = "8.8.8.8"


def _report(outcome: Outcome) -> dict:
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.exit_code == 0
    return json.loads(outcome.stdout)


@dataclass
class HostServers:
    tcp: dict[str, socket.socket]  # "host:port" -> listening socket
    udp: dict[str, socket.socket]  # "host:port" -> bound socket

    def saw_nothing(self) -> None:
        for target, srv in self.tcp.items():
            with pytest.raises(BlockingIOError):
                conn, peer = srv.accept()
                conn.close()
                pytest.fail(f"the TCP server on {target} accepted a connection from {peer}")
        for target, srv in self.udp.items():
            with pytest.raises(BlockingIOError):
                data, peer = srv.recvfrom(4096)
                pytest.fail(f"the UDP server on {target} received {data!r} from {peer}")


def _host_ipv4_addresses() -> list[str]:
    found = {"127.0.0.1"}
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET:
                found.add(a.address)
    return sorted(found)


@pytest.fixture(scope="module")
def host_servers() -> Iterator[HostServers]:
    servers = HostServers(tcp={}, udp={})
    opened: list[socket.socket] = []
    try:
        for address in _host_ipv4_addresses():
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            opened.append(tcp)
            tcp.bind((address, 0))
            tcp.listen(16)
            tcp.setblocking(False)
            servers.tcp[f"{address}:{tcp.getsockname()[1]}"] = tcp
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            opened.append(udp)
            udp.bind((address, 0))
            udp.setblocking(False)
            servers.udp[f"{address}:{udp.getsockname()[1]}"] = udp
        yield servers
    finally:
        for s in opened:
            s.close()


def _probe_host_servers_yourself(servers: HostServers) -> None:
    """The servers work: a connection from the host itself is seen (then drained)."""
    for target, srv in servers.tcp.items():
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=2):
            pass
        srv.settimeout(2)
        conn, _ = srv.accept()
        conn.close()
        srv.setblocking(False)


PY_CONNECT = textwrap.dedent(
    """
    import errno, json, socket, sys
    def name(e):
        return errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
    out = {}
    for target in sys.argv[1:]:
        proto, host, port = target.split(" ")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            if proto == "tcp":
                s.connect((host, int(port)))
                out[target] = "CONNECTED"
            else:
                s.sendto(b"hello from the sandbox", (host, int(port)))
                out[target] = "SENT"
        except OSError as e:
            out[target] = name(e)
        finally:
            s.close()
    print(json.dumps(out))
    """
)

JS_CONNECT = textwrap.dedent(
    """
    const net = require('net');
    const dgram = require('dgram');
    const out = {};
    function probe(target) {
      const [proto, host, port] = target.split(' ');
      return new Promise((resolve) => {
        const done = (v) => { if (!(target in out)) { out[target] = v; } resolve(); };
        if (proto === 'tcp') {
          const s = net.connect({ host, port: Number(port) });
          s.setTimeout(2000, () => { s.destroy(); done('TIMEOUT'); });
          s.on('connect', () => { s.destroy(); done('CONNECTED'); });
          s.on('error', (e) => done(e.code));
        } else {
          const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
          s.on('error', (e) => { s.close(); done(e.code); });
          s.send('hello from the sandbox', Number(port), host, (e) => {
            s.close(); done(e ? e.code : 'SENT');
          });
        }
      });
    }
    Promise.all(process.argv.slice(2).map(probe)).then(() => console.log(JSON.stringify(out)));
    """
)


@RUNTIMES
def test_cannot_reach_host_servers_metadata_or_internet(
    pool: Pool, runtime: Runtime, host_servers: HostServers
) -> None:
    _probe_host_servers_yourself(host_servers)
    tcp_port = next(iter(host_servers.tcp)).rsplit(":", 1)[1]
    targets = [f"tcp {t.replace(':', ' ')}" for t in host_servers.tcp]
    targets += [f"udp {t.replace(':', ' ')}" for t in host_servers.udp]
    targets += [f"tcp {METADATA} 80", f"tcp {PUBLIC_DNS} 53", f"udp {PUBLIC_DNS} 53"]
    ipv6 = [f"tcp ::1 {tcp_port}", f"udp ::1 {tcp_port}"]
    targets += [f"tcp 127.0.0.1 {PROXY_PORT}"]
    code = PY_CONNECT if runtime is Runtime.PYTHON else JS_CONNECT
    seen = _report(run(pool, runtime, code, args=(*targets, *ipv6), limits=LIMITS))

    # No route but the namespace's own loopback: every other address is unreachable; on its
    # loopback nothing listens (the proxy's port included: this request has no egress), and a
    # datagram to it stays in the namespace.
    def expected(target: str) -> str:
        proto, host, _ = target.split(" ")
        if host in ("127.0.0.1", "::1"):
            return "ECONNREFUSED" if proto == "tcp" else "SENT"
        return "ENETUNREACH"

    assert seen == {t: expected(t) for t in (*targets, *ipv6)}
    host_servers.saw_nothing()


@RUNTIMES
def test_no_dns(pool: Pool, runtime: Runtime) -> None:
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import json, socket
            out = {}
            for host in ("example.com", "metadata.google.internal", "redis"):
                try:
                    out[host] = [a[4][0] for a in socket.getaddrinfo(host, 80)]
                except socket.gaierror as e:
                    out[host] = ["gaierror", e.errno]
            out["localhost"] = sorted({a[4][0] for a in socket.getaddrinfo("localhost", 80)})
            print(json.dumps(out))
            """
        )
        seen = _report(run(pool, runtime, code, limits=LIMITS))
        for host in ("example.com", "metadata.google.internal", "redis"):
            assert seen[host] == ["gaierror", socket.EAI_NONAME], host
    else:
        code = textwrap.dedent(
            """
            const dns = require('dns');
            const out = {};
            const hosts = ['example.com', 'metadata.google.internal', 'redis'];
            const lookups = hosts.map((h) => new Promise((res) =>
              dns.lookup(h, (e, a) => { out['lookup ' + h] = e ? e.code : a; res(); })));
            const resolves = hosts.map((h) => new Promise((res) =>
              dns.resolve4(h, (e, a) => { out['resolve4 ' + h] = e ? e.code : a; res(); })));
            const local = new Promise((res) => dns.lookup('localhost', { all: true }, (e, a) => {
              out.localhost = e ? e.code : [...new Set(a.map((x) => x.address))].sort(); res(); }));
            Promise.all([...lookups, ...resolves, local]).then(() => console.log(JSON.stringify(out)));
            """
        )
        seen = _report(run(pool, runtime, code, limits=LIMITS))
        for host in ("example.com", "metadata.google.internal", "redis"):
            assert seen["lookup " + host] == "ENOTFOUND", host
            # c-ares has no name server but the down loopback: refused at once
            assert seen["resolve4 " + host] == "ECONNREFUSED", host
    # only the jail's own /etc/hosts answers
    assert set(seen["localhost"]) <= {"127.0.0.1", "::1"}
    assert "127.0.0.1" in seen["localhost"]


# (family, type, proto) -> errno name; family numbers from <linux/socket.h>
SOCKETS = {
    "AF_NETLINK raw": (16, socket.SOCK_RAW, 0, "EAFNOSUPPORT"),
    "AF_NETLINK route dgram": (16, socket.SOCK_DGRAM, 0, "EAFNOSUPPORT"),
    "AF_PACKET raw": (17, socket.SOCK_RAW, 0x0300, "EAFNOSUPPORT"),
    "AF_PACKET dgram": (17, socket.SOCK_DGRAM, 0x0300, "EAFNOSUPPORT"),
    "AF_KEY": (15, socket.SOCK_RAW, 2, "EAFNOSUPPORT"),
    "AF_BLUETOOTH": (31, socket.SOCK_STREAM, 0, "EAFNOSUPPORT"),
    "AF_ALG": (38, socket.SOCK_SEQPACKET, 0, "EAFNOSUPPORT"),
    "AF_VSOCK": (40, socket.SOCK_STREAM, 0, "EAFNOSUPPORT"),
    "AF_XDP": (44, socket.SOCK_RAW, 0, "EAFNOSUPPORT"),
    "family 0x100000002 (AF_INET in the low half)": (0x1_0000_0002, socket.SOCK_RAW, 1, "EAFNOSUPPORT"),
    "AF_INET raw icmp": (2, socket.SOCK_RAW, 1, "EPERM"),
    "AF_INET raw IPPROTO_RAW": (2, socket.SOCK_RAW, 255, "EPERM"),
    "AF_INET6 raw icmpv6": (10, socket.SOCK_RAW, 58, "EPERM"),
}  # fmt: skip


def test_forbidden_socket_families_and_raw_sockets(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import ctypes, errno, json, sys
        libc = ctypes.CDLL(None, use_errno=True)
        libc.socket.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_int]
        spec = json.loads(sys.argv[1])
        out = {}
        for name, (family, kind, proto) in spec.items():
            # the raw syscall with a 64-bit family register, so upper bits reach the filter
            fd = libc.syscall(41, ctypes.c_long(family), kind, proto)
            out[name] = "OK" if fd >= 0 else errno.errorcode[ctypes.get_errno()]
            pair = (ctypes.c_int * 2)()
            r = libc.syscall(53, ctypes.c_long(family), kind, proto, pair)
            out["socketpair " + name] = "OK" if r >= 0 else errno.errorcode[ctypes.get_errno()]
        print(json.dumps(out))
        """
    )
    spec = {name: (fam, kind, proto) for name, (fam, kind, proto, _) in SOCKETS.items()}
    seen = _report(run(pool, Runtime.PYTHON, code, args=(json.dumps(spec),), limits=LIMITS))
    expected = {name: err for name, (*_, err) in SOCKETS.items()}
    for name, (*_, err) in SOCKETS.items():
        # socketpair: a forbidden family fails in the filter, a raw socket before the pair
        expected["socketpair " + name] = err
    assert seen == expected


def test_interfaces_cannot_be_changed_and_host_sockets_are_invisible(
    pool: Pool, host_servers: HostServers
) -> None:
    code = textwrap.dedent(
        """
        import errno, fcntl, json, socket, struct
        SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out = {}
        flags = struct.unpack("16sh14x", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh14x", b"lo", 0)))[1]
        out["lo up"] = bool(flags & IFF_UP)
        try:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags & ~IFF_UP))
            out["take lo down"] = "OK"
        except OSError as e:
            out["take lo down"] = errno.errorcode[e.errno]
        out["interfaces"] = [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]]
        out["tcp sockets"] = open("/proc/net/tcp").read().splitlines()[1:]
        out["udp sockets"] = open("/proc/net/udp").read().splitlines()[1:]
        print(json.dumps(out))
        """
    )
    seen = _report(run(pool, Runtime.PYTHON, code, limits=LIMITS))
    assert seen == {
        "lo up": True,  # brought up by the worker while privileged (the egress proxy's door)
        "take lo down": "EPERM",
        "interfaces": ["lo"],
        # The host's listening servers (this test's own) are not there, nor the proxy's
        # socket: a request without egress has it closed before the program runs.
        "tcp sockets": [],
        "udp sockets": [],
    }
