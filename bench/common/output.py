"""Where every command's report goes: the terminal, its own section of bench/RESULTS.md (one
writer for all commands), and on request a JSON file of the raw numbers.

A command records its run in RESULTS.md unless it runs with `--quick` (a smoke run) or
`--no-results`; `--results FILE` records it there instead (also with `--quick`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"
RESULTS_HEADER = """# sandboxd benchmark results

Recorded by `python -m bench pool`, `python -m bench e2e` and `python -m bench cluster` (code in
`bench/`, one subpackage per command; see `bench/__init__.py` and docs/benchmarks.md). Each run
replaces its own section between the markers below; the command, date, machine, load average
and engine revision are part of it. Everything above the markers is kept.
"""


def log(message: str) -> None:
    """Progress, on stderr (stdout is the report)."""
    print(message, file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser, *, raw: bool = True) -> None:
    """--quick, --results, --no-results and --json (`raw`: the command has raw numbers), the
    same for every command."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts for a smoke run; does not write RESULTS.md unless --results is given",
    )
    parser.add_argument(
        "--results", type=Path, help="Markdown file to record the run in (default bench/RESULTS.md)"
    )
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    if raw:
        parser.add_argument(
            "--json", type=Path, help="also write the raw numbers to this JSON file"
        )


def markers(section: str) -> tuple[str, str]:
    return f"<!-- bench:{section}:begin -->", f"<!-- bench:{section}:end -->"


def write_section(path: Path, section: str, text: str) -> None:
    """Replace `section`'s part of `path` with `text` (append it if there is none; create the
    file with its header if it is missing); every other section is kept."""
    begin, end = markers(section)
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    content = path.read_text() if path.exists() else RESULTS_HEADER + "\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(content):
        content = pattern.sub(lambda _: block, content, count=1)
    else:
        content = content.rstrip() + "\n\n" + block
    path.write_text(content)


def as_json(value: Any) -> Any:
    """A report dataclass as JSON values; a key made of several parts is joined with '/'."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {
            "/".join(map(str, k)) if isinstance(k, tuple) else k: as_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value


def publish(args: argparse.Namespace, section: str, text: str, report: Any = None) -> None:
    """Print the report, record it (see the module doc) and write `report` as JSON if asked."""
    print(text)
    path = args.results if args.results is not None else (None if args.quick else RESULTS)
    if path is not None and not args.no_results:
        write_section(path, section, text)
        log(f"results written to {path}")
    if getattr(args, "json", None) is not None:
        args.json.write_text(json.dumps(as_json(report), indent=2) + "\n")
        log(f"raw results written to {args.json}")
