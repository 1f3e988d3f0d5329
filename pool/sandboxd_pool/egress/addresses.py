"""Which addresses the proxy refuses to connect to, whatever name led there.

Refused unless the operator opened a range holding it for the tenant (egress_private_ranges):
loopback, link-local (169.254.169.254, the cloud metadata service, included), private
(RFC 1918, fc00::/7), shared (100.64.0.0/10), unspecified, multicast, reserved and
documentation addresses — everything Python's ipaddress does not call global — and the
addresses of the daemon's own interfaces (a public one included). An IPv4-mapped address
(::ffff:a.b.c.d) is judged as its IPv4 address; one that embeds an IPv4 address otherwise
(NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4, Teredo) by that address too.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable

import psutil

from .policy import IPAddress, IPNetwork

NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
OWN_ADDRESSES_TTL_S = 30.0


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in net for net in NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _category(address: IPAddress) -> str:
    """Why an address is not one to connect to ("" when it is global)."""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not a global address"
    return ""


def refusal(address: IPAddress, allowed: Iterable[IPNetwork], own: frozenset[IPAddress]) -> str:
    """Why the proxy must not connect to `address`; "" when it may. An IPv4-mapped IPv6
    address (::ffff:a.b.c.d) is the IPv4 address, to the ranges as to the checks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        reason = refusal(address.ipv4_mapped, allowed, own)
        return f"IPv4-mapped {address.ipv4_mapped}: {reason}" if reason else ""
    allowed = tuple(allowed)
    if any(address.version == net.version and address in net for net in allowed):
        return ""
    reason = _category(address)
    if not reason and address in own:
        reason = "an address of the daemon's own host"
    if not reason and isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(address):
            inner_reason = refusal(inner, allowed, own)
            if inner_reason:
                reason = f"embeds {inner} ({inner_reason})"
                break
    return reason


class OwnAddresses:
    """The addresses of this host's interfaces, read again at most every OWN_ADDRESSES_TTL_S
    (an interface may come up after the daemon started)."""

    def __init__(self) -> None:
        self._read_at = -OWN_ADDRESSES_TTL_S
        self._addresses: frozenset[IPAddress] = frozenset()

    def get(self) -> frozenset[IPAddress]:
        now = time.monotonic()
        if now - self._read_at >= OWN_ADDRESSES_TTL_S:
            found: set[IPAddress] = set()
            for addrs in psutil.net_if_addrs().values():
                for a in addrs:
                    if a.family in (socket.AF_INET, socket.AF_INET6):
                        try:
                            found.add(ipaddress.ip_address(a.address.split("%", 1)[0]))
                        except ValueError:
                            continue
            self._addresses, self._read_at = frozenset(found), now
        return self._addresses
