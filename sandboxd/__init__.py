"""sandboxd: run untrusted Python and JavaScript in warm, single-use, jailed workers.

This distribution is the daemon (gRPC servicer, tenants, quotas, async jobs, metrics, CLI).
The engine is `sandboxd_pool` (distribution `sandboxd-pool`); the client library is
`sandboxd_client` (distribution `sandboxd-client`). For now only the CLI's `demo` command
exists; `sandboxd serve` arrives with the service.
"""

__version__ = "0.1.0"
