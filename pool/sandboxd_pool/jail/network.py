"""The worker's network: its own namespace with loopback only, and the egress proxy's door.

The child unshares a network namespace (namespaces.CHILD_UNSHARE_FLAGS) holding one interface,
`lo`, down. When the pool serves egress (PoolConfig.egress_proxy), the child, while it still
holds CAP_NET_ADMIN over that namespace (root mode: real root, before its user namespace;
subuid mode: the capabilities of its own user namespace, which owns the network namespace),
brings `lo` up and opens a listening TCP socket on 127.0.0.1:PROXY_PORT inside it. The socket
goes to the zygote and on to the pool with the worker's other descriptors; the program never
holds it. The pool accepts on it and serves the connections as the egress proxy
(sandboxd_pool/egress/), or closes it when the request has no egress, so connections to the
port are refused. Nothing else leaves the namespace: no other interface, no route, no DNS.
"""

from __future__ import annotations

import fcntl
import socket
import struct

PROXY_HOST = "127.0.0.1"
PROXY_PORT = 3128  # inside every worker's own network namespace; the address in HTTP(S)_PROXY
PROXY_BACKLOG = 128

SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_loopback_up() -> None:
    """`ip link set lo up` in the caller's network namespace (needs CAP_NET_ADMIN over it)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", IFF_UP))
    finally:
        probe.close()


def open_proxy_listener() -> int:
    """Bring `lo` up and listen on PROXY_HOST:PROXY_PORT in the caller's network namespace.
    Returns the listening socket's fd (close-on-exec). No SO_REUSEADDR or SO_REUSEPORT: no
    other socket of the namespace can bind the port while this one is open."""
    bring_loopback_up()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((PROXY_HOST, PROXY_PORT))
        listener.listen(PROXY_BACKLOG)
    except BaseException:
        listener.close()
        raise
    return listener.detach()
