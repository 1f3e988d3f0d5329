"""Exit 0 when sandboxd, sandboxd-pool and sandboxd-client are installed editable from this
checkout into the running interpreter's environment; exit 1 (naming what differs) otherwise.

The Makefile's install stamps only know that *some* install happened; another clone on the same
machine (CI clones main next to the work tree) can re-point the editable installs at itself.
Run with `python -I` so the current directory's *.egg-info is not mistaken for the install.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "sandboxd": ROOT,
    "sandboxd-pool": ROOT / "pool",
    "sandboxd-client": ROOT / "client",
}


def editable_source(distribution: str) -> Path | None:
    """The directory `distribution` is installed editable from, or None."""
    try:
        direct_url = metadata.distribution(distribution).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not direct_url:
        return None
    info = json.loads(direct_url)
    url = urlparse(info.get("url", ""))
    if url.scheme != "file" or not info.get("dir_info", {}).get("editable"):
        return None
    return Path(unquote(url.path)).resolve()


def main() -> int:
    wrong = {
        name: editable_source(name)
        for name, where in EXPECTED.items()
        if editable_source(name) != where.resolve()
    }
    for name, source in wrong.items():
        found = f"editable from {source}" if source else "not installed editable"
        print(f"{name}: {found}, want {EXPECTED[name]}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
