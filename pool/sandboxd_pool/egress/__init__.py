"""Egress: a program's only way out of its worker, through a proxy the pool runs.

Each worker has a network namespace of its own with loopback only; the pool serves a listening
socket made inside it (jail/network.py) as an HTTP proxy at 127.0.0.1:3128, for a request that
comes with an egress policy (Pool.execute(egress=EgressPolicy(...))). The modules, each one
concern:

    policy.py     rules (host:port, *.domain:port, address or CIDR:port), private ranges, headers
    addresses.py  the addresses refused unless a range opens them (loopback, link-local, ...)
    hosts.py      the proxy's own hosts map (--egress-hosts)
    resolver.py   name -> checked addresses, once
    http1.py      strict HTTP/1.1 parsing (no request smuggling through the proxy)
    streams.py    pull-based byte streams, the TLS the proxy speaks to the program
    ca.py         the pool's CA and its leaf certificates; the destinations' TLS context
    trust.py      the jail's trust bundle with that CA
    ledger.py     an execution's limits and what it spent: Outcome.egress
    proxy.py      one program connection: CONNECT tunnels, forwarded requests, refusals
    service.py    the event loop thread and one session per execution

This package's __init__ imports only the policy: the CA (cryptography) loads with the service.
"""

from .policy import EgressHeader, EgressPolicy, EgressRule

__all__ = ["EgressHeader", "EgressPolicy", "EgressRule"]
