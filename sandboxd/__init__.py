"""sandboxd: run untrusted Python and JavaScript in warm, single-use, jailed workers.

This distribution is the daemon (gRPC servicer, tenants, quotas, async jobs, metrics, CLI).
The engine is `sandboxd_pool` (distribution `sandboxd-pool`); the client library is
`sandboxd_client` (distribution `sandboxd-client`). `sandboxd serve` runs the daemon
(server.py); see cli/ for the commands.
"""

__version__ = "0.1.0"
