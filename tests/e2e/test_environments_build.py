"""`sandboxd environments build` for real (pip and npm against the registries): idempotent,
read-only, its lock beside it, failures naming the package with the tool's reason and leaving
nothing behind, and matplotlib's font list made at build time."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

from . import environments


def sandboxd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandboxd", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("SANDBOXD_")},
        check=False,
    )


def test_a_build_is_reused_read_only_and_locked(tmp_path: Path) -> None:
    file = tmp_path / "environments.toml"
    file.write_text(
        '[environments.one]\nruntime = "python"\npackages = ["six==1.16.0"]\n'
        '[environments.two]\nruntime = "python"\npackages = ["six==1.16.0"]\npreload = ["six"]\n'
    )
    store = tmp_path / "store"
    first = sandboxd("environments", "build", "one", "--environments", str(file),
                     "--environments-store", str(store))  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("one: built in ")
    directory = first.stdout.split(": ")[2].split(" (")[0]
    assert os.path.dirname(directory) == str(store)
    # the same packages under another name (and another preload list): the same build
    again = sandboxd("environments", "build", "--environments", str(file),
                     "--environments-store", str(store))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"one: already built: {directory} (0.1 MiB, 1 packages)",
        f"two: already built: {directory} (0.1 MiB, 1 packages)",
    ]
    lock = Path(directory, "requirements.lock").read_text()
    assert lock.startswith("six==1.16.0 --hash=sha256:") and lock.count("\n") == 1
    assert Path(directory, "site", "six.py").is_file()
    for root, dirs, files in os.walk(directory):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            assert os.lstat(name).st_mode & 0o222 == 0, name
    assert sorted(os.listdir(store)) == [".lock", os.path.basename(directory)]


def test_failures_name_the_package_and_the_reason_and_leave_nothing(tmp_path: Path) -> None:
    file = tmp_path / "environments.toml"
    file.write_text(
        '[environments.py]\nruntime = "python"\n'
        'packages = ["six==1.16.0", "sandboxd-no-such-package-xyz==1.0"]\n'
        '[environments.js]\nruntime = "javascript"\n'
        'packages = ["lodash@4.17.21", "sandboxd-no-such-package-xyz@1.0.0"]\n'
    )
    store = tmp_path / "store"
    done = sandboxd("environments", "build", "--environments", str(file),
                    "--environments-store", str(store))  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    py = lines.index(
        "sandboxd environments build: error: environment 'py': pip could not install "
        "sandboxd-no-such-package-xyz==1.0:"
    )
    assert "No matching distribution found for sandboxd-no-such-package-xyz==1.0" in lines[py + 2]
    js = [i for i, line in enumerate(lines) if "environment 'js': npm could not install" in line]
    assert lines[js[0]].endswith("could not install sandboxd-no-such-package-xyz@1.0.0:")
    assert "404" in "\n".join(lines[js[0] :])
    assert os.listdir(store) == [".lock"]  # no build, no half-built directory
    listed = sandboxd("environments", "list", "--environments", str(file),
                      "--environments-store", str(store))  # fmt: skip
    assert listed.stdout.splitlines() == [
        "py\tpython\tnot built (sandboxd environments build py)",
        "js\tjavascript\tnot built (sandboxd environments build js)",
    ]


def test_matplotlib_font_list_is_made_at_build_time_with_its_own_fonts_only() -> None:
    store = environments.build()
    (fontlist,) = glob.glob(f"{store}/python-*/site/.sandboxd-cache/matplotlib/fontlist-v*.json")
    fonts = json.loads(Path(fontlist).read_text())["ttflist"]
    assert fonts and all(not f["fname"].startswith("/") for f in fonts)  # relative to mpl-data
    assert {"DejaVu Sans", "DejaVu Serif", "STIXGeneral"} <= {f["name"] for f in fonts}
