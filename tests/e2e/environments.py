"""The real environments of tests/e2e/environments.toml, built from the registries by
`sandboxd environments build` (the command operators run) into a store that outlives the test
run: the first run builds them (about a minute here), later runs find the same builds
(content-addressed) and reuse them. The store is under $SANDBOXD_TEST_CACHE (default
~/.cache/sandboxd-tests), outside the checkout; remove it to build afresh."""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ENVIRONMENTS_FILE = os.path.join(HERE, "environments.toml")
BUILD_TIMEOUT_S = 1200


def cache_store() -> str:
    root = os.environ.get("SANDBOXD_TEST_CACHE") or os.path.expanduser("~/.cache/sandboxd-tests")
    return os.path.join(root, "environments")


def build(environments_file: str = ENVIRONMENTS_FILE, store: str | None = None) -> str:
    """Build (or find) every environment of the file; the store. Raises with the command's
    output when a build fails."""
    store = store or cache_store()
    done = subprocess.run(
        [
            sys.executable, "-m", "sandboxd", "environments", "build",
            "--environments", environments_file, "--environments-store", store,
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        env={k: v for k, v in os.environ.items() if not k.startswith("SANDBOXD_")},
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"sandboxd environments build failed:\n{done.stdout}{done.stderr}")
    return store
