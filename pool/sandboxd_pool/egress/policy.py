"""An execution's egress policy: where the proxy may connect, which private ranges the operator
opened, and the headers the proxy adds. Pure data and matching; no I/O.

Rules are written `HOST:PORT`:
    api.example.test:8443      exactly that name
    *.example.org:443          every name under example.org (a.example.org, a.b.example.org),
                               not example.org itself
    203.0.113.7:443            that address, when the program asks for it as an address
    203.0.113.0/24:443         any address in the range, asked for as an address
    [2001:db8::1]:443          IPv6 addresses and ranges go in brackets
A name rule never matches an address the program gives, nor an address rule a name: the proxy
decides on what the program asked for, then resolves names itself and checks every address
(egress/addresses.py). A request may narrow the tenant's rules (EgressPolicy.narrowed), never
widen them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token (a header name)
# Headers the proxy owns on the wire: a rule may not set them (the framing, the connection,
# the destination, what the proxy itself answers to).
PROXY_OWNED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
MAX_HEADER_VALUE_BYTES = 8192


def format_address(address: IPAddress) -> str:
    """An address as the proxy shows it: IPv4-mapped IPv6 as ::ffff:a.b.c.d (every Python)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def normalize_host(text: str) -> str:
    """A destination host as the proxy compares it: a lowercase name without a trailing dot,
    or an address in its canonical form. Raises ValueError for anything else (non-ASCII names
    must be given in their IDNA form, xn--...)."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return format_address(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv6 address") from None
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    if ":" in host:
        try:
            return format_address(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv6 address") from None
    name = host.lower().removesuffix(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(
            f"{text!r} is not a host name (letters, digits, '-' and '_' in dot-separated labels "
            "of at most 63; IDNA names as xn--...)"
        )
    return name


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def split_host_port(entry: str) -> tuple[str, str]:
    """`host:port` or `[v6]:port` (the port as written)."""
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0 or entry[close + 1 : close + 2] != ":":
            raise ValueError(f"{entry!r}: write an IPv6 destination as [ADDRESS]:PORT")
        return entry[: close + 1], entry[close + 2 :]
    host, sep, port = entry.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{entry!r}: write a destination as HOST:PORT")
    return host, port


@dataclass(frozen=True)
class EgressRule:
    """One allowed destination. `host` is a normalized name, `*.` + a name (every name under
    it), an address, or a network (CIDR); `port` the one port allowed with it."""

    host: str
    port: int

    @staticmethod
    def parse(entry: str) -> EgressRule:
        if not isinstance(entry, str):
            raise ValueError(f"{entry!r}: a destination is a string HOST:PORT")
        raw_host, raw_port = split_host_port(entry.strip())
        if ":" in raw_host and not raw_host.startswith("["):
            raise ValueError(f"{entry!r}: write an IPv6 destination as [ADDRESS]:PORT")
        port = _parse_port(raw_port, entry)
        bare = raw_host[1:-1] if raw_host.startswith("[") else raw_host
        if "/" in bare:
            try:
                network = ipaddress.ip_network(bare, strict=True)
            except ValueError as e:
                raise ValueError(f"{entry!r}: not a network: {e}") from None
            return EgressRule(str(network), port)
        if raw_host.startswith("*."):
            return EgressRule("*." + normalize_host(raw_host[2:]), port)
        if "*" in raw_host:
            raise ValueError(f"{entry!r}: a wildcard is only '*.' at the start of a name")
        try:
            return EgressRule(normalize_host(raw_host), port)
        except ValueError as e:
            raise ValueError(f"{entry!r}: {e}") from None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def network(self) -> IPNetwork | None:
        if "/" in self.host:
            return ipaddress.ip_network(self.host)
        if is_address(self.host):
            return ipaddress.ip_network(self.host)
        return None

    def matches(self, host: str, port: int) -> bool:
        """Whether the program's destination (normalized host, port) is this rule's."""
        if port != self.port:
            return False
        network = self.network
        if network is not None:
            return is_address(host) and ipaddress.ip_address(host) in network
        if is_address(host):
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host

    def covers(self, other: EgressRule) -> bool:
        """Whether every destination `other` allows, this rule allows too."""
        if other.port != self.port:
            return False
        mine, theirs = self.network, other.network
        if mine is not None or theirs is not None:
            return (
                mine is not None
                and theirs is not None
                and theirs.version == mine.version
                and theirs.subnet_of(mine)  # type: ignore[arg-type]
            )
        if other.host.startswith("*."):
            return self.host.startswith("*.") and (
                other.host == self.host or other.host.endswith(self.host[1:])
            )
        return self.matches(other.host, other.port)


def host_pattern_matches(pattern: str, host: str) -> bool:
    """A header rule's host: an exact name, or `*.` + a name for every name under it."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


@dataclass(frozen=True)
class EgressHeader:
    """A header the proxy sets on every request it forwards to `host` (an exact name or `*.` +
    a name): an existing header of that name is replaced (a placeholder the program sent), else
    it is added. The value is the tenant's secret: it never enters the sandbox, and it is left
    out of repr()."""

    host: str
    name: str
    value: str = field(repr=False)

    def __post_init__(self) -> None:
        host = self.host
        pattern = "*." + normalize_host(host[2:]) if host.startswith("*.") else None
        object.__setattr__(self, "host", pattern or normalize_host(host))
        if is_address(self.host):
            raise ValueError(f"host {host!r}: headers are bound to names, not addresses")
        if not _TOKEN.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} is not a header name")
        if self.name.lower() in PROXY_OWNED_HEADERS:
            raise ValueError(f"name {self.name!r}: the proxy sets that header itself")
        if any(c in self.value for c in "\r\n\0") or any(
            (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in self.value
        ):
            raise ValueError(f"the value of header {self.name!r} holds a control character")
        if self.value != self.value.strip(" \t"):
            raise ValueError(f"the value of header {self.name!r} starts or ends with blanks")
        try:
            size = len(self.value.encode("latin-1"))
        except UnicodeEncodeError:
            raise ValueError(
                f"the value of header {self.name!r} is not Latin-1 text (HTTP header values are "
                "bytes; encode it, e.g. base64)"
            ) from None
        if size > MAX_HEADER_VALUE_BYTES:
            raise ValueError(f"the value of header {self.name!r} is over {MAX_HEADER_VALUE_BYTES}")

    def applies_to(self, host: str) -> bool:
        return host_pattern_matches(self.host, host)


@dataclass(frozen=True)
class EgressPolicy:
    """What one execution may reach through the proxy. An empty `rules` allows nothing;
    `private_ranges` are the loopback, link-local or private networks the operator opened
    (the address check refuses those otherwise); `headers` are added on the way out."""

    rules: tuple[EgressRule, ...] = ()
    private_ranges: tuple[str, ...] = ()
    headers: tuple[EgressHeader, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "headers", tuple(self.headers))
        ranges = []
        for text in self.private_ranges:
            try:
                ranges.append(str(ipaddress.ip_network(str(text).strip(), strict=True)))
            except ValueError as e:
                raise ValueError(f"private range {text!r}: {e}") from None
        object.__setattr__(self, "private_ranges", tuple(ranges))

    @staticmethod
    def parse(
        egress: Iterable[str],
        private_ranges: Iterable[str] = (),
        headers: Iterable[EgressHeader] = (),
    ) -> EgressPolicy:
        """From the tenant file's shape; ValueError names the entry that is wrong."""
        return EgressPolicy(
            rules=tuple(EgressRule.parse(entry) for entry in egress),
            private_ranges=tuple(private_ranges),
            headers=tuple(headers),
        )

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(r) for r in self.private_ranges)

    def rule_for(self, host: str, port: int) -> EgressRule | None:
        return next((rule for rule in self.rules if rule.matches(host, port)), None)

    def headers_for(self, host: str) -> tuple[EgressHeader, ...]:
        return tuple(h for h in self.headers if h.applies_to(host))

    def narrowed(self, destinations: Sequence[str]) -> EgressPolicy:
        """This policy limited to `destinations` (a request's own list); each must lie within a
        rule of this policy, else ValueError names it. The ranges and headers stay."""
        rules = []
        for entry in destinations:
            wanted = EgressRule.parse(entry)
            if not any(rule.covers(wanted) for rule in self.rules):
                raise ValueError(f"{entry!r} is not within the tenant's egress rules")
            rules.append(wanted)
        return EgressPolicy(
            rules=tuple(rules), private_ranges=self.private_ranges, headers=self.headers
        )
