"""Real client libraries a sandboxed program brings along in its request files.

Python: `requests` and its dependencies, copied from this test environment (they come from
requirements-dev.lock); found in /work, the program's directory, which is on sys.path.
JavaScript: `axios` and its dependencies from tests/egress/node_packages (npm ci of its
package-lock.json, done by `make test`), under node_modules/ in /work, where require() finds
them.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

PYTHON_PACKAGES = ("requests", "urllib3", "idna", "certifi", "charset_normalizer")
NODE_PACKAGES = Path(__file__).parent / "node_packages" / "node_modules"


def _tree(root: Path, prefix: str) -> dict[str, bytes]:
    files = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = Path(directory) / name
            files[f"{prefix}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return files


@functools.cache
def python_requests() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name in PYTHON_PACKAGES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        files.update(_tree(Path(module.__file__).parent, name))
    return files


@functools.cache
def node_axios() -> dict[str, bytes]:
    if not (NODE_PACKAGES / "axios" / "package.json").is_file():
        raise AssertionError(
            f"{NODE_PACKAGES} has no axios: run `make install-dev` (npm ci of "
            "tests/egress/node_packages)"
        )
    return _tree(NODE_PACKAGES, "node_modules")
