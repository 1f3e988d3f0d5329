"""Name to checked addresses, once: the proxy connects only to an address returned here.

The hosts map (egress/hosts.py) first, then the daemon host's resolver (getaddrinfo, in
threads of the resolver's own: LOOKUP_THREADS for the whole pool, at most
LOOKUPS_PER_EXECUTION of them at once for one execution, so a tenant whose wildcard names
resolve slowly cannot hold every lookup of the others). Every address is checked (egress/addresses.py); the refused ones are
dropped, and the connection goes to one of those left, never to a name looked up again (so
DNS rebinding between a check and a connect is not possible). An address the program gives
itself is checked the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from .addresses import OwnAddresses, refusal
from .policy import IPAddress, IPNetwork, format_address, is_address

RESOLVE_TIMEOUT_S = 5.0
LOOKUP_THREADS = 16
LOOKUPS_PER_EXECUTION = 2


class ResolveError(Exception):
    """The name has no address, or (`refused`) none the proxy may use; the message says why."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Resolved:
    usable: tuple[IPAddress, ...]  # in the resolver's order
    refused: tuple[tuple[IPAddress, str], ...]  # address, why


class Resolver:
    def __init__(self, hosts: Mapping[str, tuple[IPAddress, ...]]) -> None:
        self._hosts = hosts
        self._own = OwnAddresses()
        self._threads = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="sandboxd-egress-dns")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def resolve(
        self,
        host: str,
        port: int,
        allowed: tuple[IPNetwork, ...],
        gate: asyncio.Semaphore | None = None,
    ) -> Resolved:
        """The usable addresses of `host` (a normalized name or address). Raises ResolveError
        when none is usable, naming every refused address and why. `gate`: the execution's
        share of lookups."""
        if is_address(host):
            addresses: tuple[IPAddress, ...] = (ipaddress.ip_address(host),)
        elif host in self._hosts:
            addresses = self._hosts[host]
        elif gate is not None:
            async with gate:
                addresses = await self._lookup(host, port)
        else:
            addresses = await self._lookup(host, port)
        own = self._own.get()
        usable, refused = [], []
        for address in addresses:
            why = refusal(address, allowed, own)
            if why:
                refused.append((address, why))
            else:
                usable.append(address)
        if not usable:
            detail = ", ".join(f"{format_address(a)} ({why})" for a, why in refused)
            raise ResolveError(f"{host} resolves only to refused addresses: {detail}", True)
        return Resolved(tuple(usable), tuple(refused))

    async def _lookup(self, host: str, port: int) -> tuple[IPAddress, ...]:
        loop = asyncio.get_running_loop()
        lookup = partial(
            socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                infos = await loop.run_in_executor(self._threads, lookup)
        except TimeoutError:
            raise ResolveError(f"resolving {host} took over {RESOLVE_TIMEOUT_S:g} s") from None
        except OSError as e:
            raise ResolveError(f"{host} does not resolve ({e.strerror or e})") from None
        found: list[IPAddress] = []
        for _, _, _, _, sockaddr in infos:
            try:
                address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            except ValueError:
                continue  # not an IP address (another family)
            if address not in found:
                found.append(address)
        if not found:
            raise ResolveError(f"{host} has no IPv4 or IPv6 address")
        return tuple(found)
