"""What every command's report shares: Markdown tables (for the terminal and RESULTS.md, padded
to align) and the PASS/MISS rows of targets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetCheck:
    name: str
    target: str
    measured: str
    verdict: str  # "PASS", "MISS", "N/A"


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def targets_table(checks: list[TargetCheck]) -> str:
    rows = [[c.verdict, c.name, c.target, c.measured] for c in checks]
    return md_table(["", "target", "goal", "measured"], rows)
