"""The proxy's own hosts map (`--egress-hosts FILE`, PoolConfig.egress_hosts_file): names the
proxy resolves from this file before asking DNS, for tests and air-gapped sites.

The format is /etc/hosts': `ADDRESS NAME [NAME...]` per line, `#` starts a comment. A name on
several lines gets every address, in file order. The addresses still pass the address check
(egress/addresses.py): a name mapped to 127.0.0.1 is refused unless the tenant's
egress_private_ranges opens 127.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from types import MappingProxyType

from .policy import IPAddress, normalize_host

MAX_HOSTS_FILE_BYTES = 4 * 1024 * 1024


def parse_hosts(text: str, source: str = "hosts file") -> Mapping[str, tuple[IPAddress, ...]]:
    """name -> its addresses. ValueError names the line that is wrong."""
    found: dict[str, list[IPAddress]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{source}, line {number}: {fields[0]!r} is not an address") from None
        if len(fields) == 1:
            raise ValueError(f"{source}, line {number}: an address without a name")
        for name in fields[1:]:
            try:
                host = normalize_host(name)
            except ValueError as e:
                raise ValueError(f"{source}, line {number}: {e}") from None
            addresses = found.setdefault(host, [])
            if address not in addresses:
                addresses.append(address)
    return MappingProxyType({name: tuple(addrs) for name, addrs in found.items()})


def load_hosts_file(path: str) -> Mapping[str, tuple[IPAddress, ...]]:
    """Read and parse `path`; OSError or ValueError say what is wrong with it."""
    with open(path, "rb") as f:
        raw = f.read(MAX_HOSTS_FILE_BYTES + 1)
    if len(raw) > MAX_HOSTS_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_HOSTS_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason})") from None
    return parse_hosts(text, path)
