"""The egress policy, the address check and the hosts map: pure logic, no network."""

from __future__ import annotations

import ipaddress
import re

import pytest

from sandboxd_pool.egress import EgressHeader, EgressPolicy, EgressRule
from sandboxd_pool.egress.addresses import refusal
from sandboxd_pool.egress.hosts import parse_hosts
from sandboxd_pool.egress.policy import normalize_host


@pytest.mark.parametrize(
    ("entry", "host", "port"),
    [
        ("api.example.test:8443", "api.example.test", 8443),
        ("API.Example.Test.:443", "api.example.test", 443),
        ("*.example.org:443", "*.example.org", 443),
        ("203.0.113.7:443", "203.0.113.7", 443),
        ("10.0.0.0/8:5432", "10.0.0.0/8", 5432),
        ("[2001:db8::1]:443", "2001:db8::1", 443),
        ("[2001:db8::/32]:443", "2001:db8::/32", 443),
        ("[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80),
    ],
)
def test_rules_parse(entry: str, host: str, port: int) -> None:
    assert EgressRule.parse(entry) == EgressRule(host, port)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("api.example.test", "write a destination as HOST:PORT"),
        ("api.example.test:0", "the port must be a number from 1 to 65535"),
        ("api.example.test:65536", "the port must be a number from 1 to 65535"),
        ("api.example.test:*", "the port must be a number from 1 to 65535"),
        ("a*.example.org:443", "a wildcard is only '*.' at the start of a name"),
        ("*:443", "a wildcard is only '*.' at the start of a name"),
        ("10.0.0.1/8:443", "has host bits set"),
        ("2001:db8::1:443", "write an IPv6 destination as [ADDRESS]:PORT"),
        ("bad_host!:443", "is not a host name"),
        ("ünicode.example:443", "IDNA names as xn--"),
        ("[::1:443", "write an IPv6 destination as [ADDRESS]:PORT"),
    ],
)
def test_bad_rules_are_refused_naming_the_entry(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        EgressRule.parse(entry)
    assert repr(entry) in str(caught.value) or entry in str(caught.value)


@pytest.mark.parametrize(
    ("rule", "host", "port", "matches"),
    [
        ("api.example.test:443", "api.example.test", 443, True),
        ("api.example.test:443", "api.example.test", 80, False),
        ("api.example.test:443", "other.example.test", 443, False),
        ("*.example.org:443", "a.example.org", 443, True),
        ("*.example.org:443", "a.b.example.org", 443, True),
        ("*.example.org:443", "example.org", 443, False),
        ("*.example.org:443", "evilexample.org", 443, False),
        ("10.0.0.0/8:443", "10.1.2.3", 443, True),
        ("10.0.0.0/8:443", "11.0.0.1", 443, False),
        ("10.0.0.0/8:443", "ten.example.test", 443, False),  # names never match an address rule
        ("203.0.113.7:443", "203.0.113.7", 443, True),
        ("api.example.test:443", "203.0.113.7", 443, False),  # nor addresses a name rule
    ],
)
def test_rule_matching(rule: str, host: str, port: int, matches: bool) -> None:
    assert EgressRule.parse(rule).matches(host, port) is matches


@pytest.mark.parametrize(
    ("tenant", "request_", "covered"),
    [
        ("api.example.test:443", "api.example.test:443", True),
        ("api.example.test:443", "api.example.test:8443", False),
        ("*.example.org:443", "a.example.org:443", True),
        ("*.example.org:443", "*.a.example.org:443", True),
        ("*.example.org:443", "*.example.org:443", True),
        ("*.a.example.org:443", "*.example.org:443", False),
        ("a.example.org:443", "*.a.example.org:443", False),
        ("10.0.0.0/8:443", "10.1.0.0/16:443", True),
        ("10.1.0.0/16:443", "10.0.0.0/8:443", False),
        ("10.0.0.0/8:443", "10.9.9.9:443", True),
        ("10.0.0.0/8:443", "[2001:db8::/32]:443", False),
        ("10.0.0.0/8:443", "ten.example.test:443", False),
    ],
)
def test_a_request_narrows_never_widens(tenant: str, request_: str, covered: bool) -> None:
    policy = EgressPolicy.parse([tenant], ["127.0.0.0/8"], [EgressHeader("x.test", "A", "b")])
    if covered:
        narrowed = policy.narrowed([request_])
        assert narrowed.rules == (EgressRule.parse(request_),)
        assert (narrowed.private_ranges, narrowed.headers) == (
            policy.private_ranges,
            policy.headers,
        )
    else:
        with pytest.raises(ValueError, match="is not within the tenant's egress rules"):
            policy.narrowed([request_])


def test_headers_bind_to_names_and_hide_their_value() -> None:
    header = EgressHeader("API.example.test", "Authorization", "Bearer s3cret")
    assert header.host == "api.example.test"
    assert "s3cret" not in repr(header) and "s3cret" not in repr(EgressPolicy(headers=(header,)))
    wildcard = EgressHeader("*.example.org", "X-Key", "k")
    assert wildcard.applies_to("a.example.org") and not wildcard.applies_to("example.org")
    policy = EgressPolicy(headers=(header, wildcard))
    assert policy.headers_for("api.example.test") == (header,)
    assert policy.headers_for("b.example.org") == (wildcard,)
    assert policy.headers_for("other.test") == ()


@pytest.mark.parametrize(
    ("host", "name", "value", "message"),
    [
        ("api.test", "Bad Name", "v", "is not a header name"),
        ("api.test", "Host", "v", "the proxy sets that header itself"),
        ("api.test", "content-length", "1", "the proxy sets that header itself"),
        ("api.test", "Transfer-Encoding", "chunked", "the proxy sets that header itself"),
        ("api.test", "X-A", "a\r\nX-B: b", "holds a control character"),
        ("api.test", "X-A", "a\nb", "holds a control character"),
        ("api.test", "X-A", "a\x00", "holds a control character"),
        ("api.test", "X-A", " padded", "starts or ends with blanks"),
        ("api.test", "X-A", "€uro", "is not Latin-1 text"),
        ("api.test", "X-A", "x" * 8193, "is over 8192"),
        ("10.0.0.1", "X-A", "v", "headers are bound to names, not addresses"),
    ],
)
def test_bad_headers_are_refused(host: str, name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EgressHeader(host, name, value)


def test_private_ranges_are_checked() -> None:
    assert EgressPolicy(private_ranges=("127.0.0.0/8", " 10.0.0.0/8 ")).private_ranges == (
        "127.0.0.0/8",
        "10.0.0.0/8",
    )
    with pytest.raises(ValueError, match=re.escape("private range '127.0.0.1/8'")):
        EgressPolicy(private_ranges=("127.0.0.1/8",))


A = ipaddress.ip_address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("93.184.216.34", ""),
        ("2606:2800:220:1:248:1893:25c8:1946", ""),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "not a global address"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "private"),
        ("::ffff:127.0.0.1", "IPv4-mapped 127.0.0.1: loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped 169.254.169.254: link-local"),
        ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254 (link-local)"),
        ("2002:7f00:1::", "embeds 127.0.0.1 (loopback)"),
        ("192.0.2.10", "private"),  # documentation ranges are not global either
    ],
)
def test_the_address_check(address: str, reason: str) -> None:
    assert refusal(A(address), (), frozenset()) == reason


def test_the_daemons_own_public_address_is_refused() -> None:
    own = frozenset({A("93.184.216.34")})
    assert refusal(A("93.184.216.34"), (), own) == "an address of the daemon's own host"
    assert refusal(A("93.184.216.35"), (), own) == ""


def test_an_opened_range_allows_its_addresses_only() -> None:
    opened = (ipaddress.ip_network("127.0.0.0/8"),)
    assert refusal(A("127.0.0.1"), opened, frozenset()) == ""
    assert refusal(A("::ffff:127.0.0.1"), opened, frozenset()) == ""
    assert refusal(A("::1"), opened, frozenset()) == "loopback"
    assert refusal(A("169.254.169.254"), opened, frozenset()) == "link-local"


def test_hosts_map() -> None:
    hosts = parse_hosts(
        "# comment\n127.0.0.1 api.example.test API2.example.test.  # trailing\n\n"
        "::1 api.example.test\n10.0.0.5 db.internal\n"
    )
    assert dict(hosts) == {
        "api.example.test": (A("127.0.0.1"), A("::1")),
        "api2.example.test": (A("127.0.0.1"),),
        "db.internal": (A("10.0.0.5"),),
    }
    with pytest.raises(ValueError, match="f, line 2: 'nothere' is not an address"):
        parse_hosts("127.0.0.1 a\nnothere b\n", "f")
    with pytest.raises(ValueError, match="f, line 1: an address without a name"):
        parse_hosts("127.0.0.1\n", "f")
    with pytest.raises(ValueError, match="f, line 1: 'b!' is not a host name"):
        parse_hosts("127.0.0.1 b!\n", "f")


def test_hosts_are_normalized_once() -> None:
    assert normalize_host("[::FFFF:7f00:1]") == "::ffff:127.0.0.1"
    assert normalize_host("Api.Example.Test.") == "api.example.test"
    with pytest.raises(ValueError):
        normalize_host("")
