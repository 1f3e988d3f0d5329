"""Read a daemon's Prometheus endpoint: one series' value, or every sample of a metric."""

from __future__ import annotations

import re
import urllib.request

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of metric `name`: labels (as a frozenset of pairs) -> value."""
    found: dict[frozenset[tuple[str, str]], float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match["name"] == name:
            pairs = re.findall(r'(\w+)="([^"]*)"', match["labels"] or "")
            found[frozenset(pairs)] = float(match["value"])
    return found


def ready_workers(port: int) -> dict[str, int]:
    """sandboxd_pool_ready_workers per runtime."""
    return {
        dict(labels)["runtime"]: int(value)
        for labels, value in samples(scrape(port), "sandboxd_pool_ready_workers").items()
    }


def executions_by_verdict(port: int) -> dict[str, int]:
    """sandboxd_executions_total summed over runtimes, per verdict."""
    totals: dict[str, int] = {}
    for labels, value in samples(scrape(port), "sandboxd_executions_total").items():
        verdict = dict(labels)["verdict"]
        totals[verdict] = totals.get(verdict, 0) + int(value)
    return totals
