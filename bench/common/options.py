"""The options every measuring command shares: how much it measures (its defaults, and smaller
ones with --quick), which runtimes, with what interpreters."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


@dataclass(frozen=True)
class Scale:
    """A command's defaults, each as (normal, --quick)."""

    iterations: tuple[int, int]
    duration_s: tuple[float, float]
    threads: tuple[list[int], list[int]]


@dataclass(frozen=True)
class Measured:
    """How much one run measures: the options given, else the scale's defaults."""

    iterations: int
    warmup: int  # untimed calls first
    duration_s: float
    thread_counts: list[int]


def _text(value: float | list[int]) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else f"{value:g}"


def _shown(pair: tuple[float, float] | tuple[list[int], list[int]]) -> str:
    normal, quick = _text(pair[0]), _text(pair[1])
    return f"default {normal}" + ("" if normal == quick else f"; {quick} with --quick")


def add_arguments(
    parser: argparse.ArgumentParser,
    scale: Scale,
    *,
    iterations: str,
    duration: str,
    threads: str,
    warm_workers: str,
) -> None:
    """--iterations, --duration-s, --threads, --runtimes, --warm-workers, --python and --node;
    the help texts say what each counts for this command."""
    parser.add_argument(
        "--iterations", type=int, default=0, help=f"{iterations} ({_shown(scale.iterations)})"
    )
    parser.add_argument(
        "--duration-s", type=float, default=0.0, help=f"{duration} ({_shown(scale.duration_s)})"
    )
    parser.add_argument(
        "--threads",
        type=_ints,
        default=None,
        help=f"comma-separated {threads} ({_shown(scale.threads)})",
    )
    parser.add_argument(
        "--runtimes",
        type=_names,
        default=["python", "javascript"],
        help="comma-separated: python,javascript (default both)",
    )
    parser.add_argument("--warm-workers", type=int, default=8, help=f"{warm_workers} (default 8)")
    parser.add_argument("--python", help="Python interpreter (default: this one's real binary)")
    parser.add_argument("--node", help="Node interpreter (default: node on PATH)")


def measured(args: argparse.Namespace, scale: Scale) -> Measured:
    pick = 1 if args.quick else 0
    iterations = args.iterations or scale.iterations[pick]
    return Measured(
        iterations=iterations,
        warmup=max(3, iterations // 10),
        duration_s=args.duration_s or scale.duration_s[pick],
        thread_counts=args.threads or scale.threads[pick],
    )
