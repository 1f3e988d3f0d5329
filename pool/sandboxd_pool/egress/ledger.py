"""One execution's egress account: the limits it may spend, what it spent, per destination.

Used only in the proxy's event loop thread. Each destination (host, port, decision) is one
entry, in the order first seen; Outcome.egress is the ledger's summary. At most
MAX_DESTINATIONS - 1 destinations get entries of their own; the rest are counted together
under OTHER_DESTINATIONS (port 0, one entry per decision), so a program cannot grow the result
with names.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..types import EgressEntry, Limits

MAX_DESTINATIONS = 64
OTHER_DESTINATIONS = "(other destinations)"


class LimitReached(Exception):
    """A byte budget is used up: the connection is cut (the message says which)."""


@dataclass
class Tally:
    host: str
    port: int
    allowed: bool
    connections: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    reason: str = ""

    def note(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason


class Ledger:
    def __init__(self, limits: Limits) -> None:
        self.max_connections = limits.max_egress_connections
        self.max_sent_bytes = limits.max_egress_sent_bytes
        self.max_received_bytes = limits.max_egress_received_bytes
        self.connections = 0
        self.sent_bytes = 0
        self.received_bytes = 0
        self._tallies: dict[tuple[str, int, bool], Tally] = {}

    def take_connection(self) -> str:
        """Count one connection; the reason it is over the limit, or ""."""
        self.connections += 1
        if self.connections > self.max_connections:
            return f"the execution's max_egress_connections ({self.max_connections}) is used up"
        return ""

    def exhausted(self) -> str:
        """Why no new request may go out ("" if one may)."""
        if self.sent_bytes >= self.max_sent_bytes:
            return f"the execution's max_egress_sent_bytes ({self.max_sent_bytes}) is used up"
        if self.received_bytes >= self.max_received_bytes:
            return (
                f"the execution's max_egress_received_bytes ({self.max_received_bytes}) is used up"
            )
        return ""

    def tally(self, host: str, port: int, allowed: bool) -> Tally:
        key = (host, port, allowed)
        if key not in self._tallies and len(self._tallies) >= MAX_DESTINATIONS - 1:
            key = (OTHER_DESTINATIONS, 0, allowed)  # the last entries, one per decision
        found = self._tallies.get(key)
        if found is None:
            found = self._tallies[key] = Tally(*key)
            if host != key[0]:
                found.note(f"destinations past the first {MAX_DESTINATIONS - 1}, counted together")
        return found

    def refuse(self, host: str, port: int, reason: str) -> None:
        tally = self.tally(host, port, False)
        tally.connections += 1
        tally.note(reason)

    def sendable(self, tally: Tally, size: int) -> int:
        """How many of `size` bytes may go towards the destination now (all, or what is left of
        the budget, counted); the caller cuts the connection when it is less than `size`."""
        room = max(0, self.max_sent_bytes - self.sent_bytes)
        take = min(size, room)
        self.sent_bytes += take
        tally.sent_bytes += take
        if take < size:
            tally.note(
                f"cut: the execution's max_egress_sent_bytes ({self.max_sent_bytes}) is used up"
            )
        return take

    def receivable(self, tally: Tally, size: int) -> int:
        room = max(0, self.max_received_bytes - self.received_bytes)
        take = min(size, room)
        self.received_bytes += take
        tally.received_bytes += take
        if take < size:
            tally.note(
                f"cut: the execution's max_egress_received_bytes ({self.max_received_bytes}) is "
                "used up"
            )
        return take

    def summary(self) -> tuple[EgressEntry, ...]:
        return tuple(
            EgressEntry(
                host=t.host,
                port=t.port,
                allowed=t.allowed,
                connections=t.connections,
                sent_bytes=t.sent_bytes,
                received_bytes=t.received_bytes,
                reason=t.reason,
            )
            for t in self._tallies.values()
        )
