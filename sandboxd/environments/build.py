"""`sandboxd environments build`: pip and npm, run by the operator on the host (never at
request time, never inside a sandbox), into the store (store.py).

Python: `python -I -m pip install --target DIR --ignore-installed --report ...` with the
interpreter the workers run: -I keeps the caller's PYTHONPATH and user site out, and
--ignore-installed makes pip install every requirement into DIR instead of counting what the
host's interpreter already has. Then what the packages would build the first time they are
imported, which the jail's read-only mount cannot keep: matplotlib's font list (only its own
fonts: the jail has no system fonts), used by the template (python_boot.load_environment).
JavaScript: `npm install --prefix DIR --save-exact` (DIR gets node_modules, package.json and
package-lock.json).

A build runs in a hidden directory of the store and is renamed to its content address only
once complete and made read-only; a failed one leaves nothing. Builds of one store are
serialised by a lock file, so two operators (or two test sessions) building the same
declaration at once build it once."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator

from sandboxd_pool.types import Runtime

from .declaration import Declaration
from .store import CACHE_DIR, PYTHON_SITE, RECORD, Build, Store, build_id
from .toolchain import Toolchain

BUILD_TIMEOUT_S = 1800.0
MAX_REASON_LINES = 12

# Run by the workers' interpreter with the fresh build on sys.path (argv: site, cache dir):
# matplotlib's font list of its own fonts, paths relative to its data directory (so the list
# holds in the jail, where the package is elsewhere). Building it inside the template would
# run fc-list (which fails there: "Fontconfig error: Cannot load default config file") and
# start a timer thread on every template start.
_MATPLOTLIB_FONTS = """\
import os, sys
sys.path.append(sys.argv[1])
os.environ["MPLCONFIGDIR"] = sys.argv[2]
import matplotlib.font_manager as fm
system_fonts = fm.findSystemFonts
fm.findSystemFonts = lambda fontpaths=None, fontext="ttf": (
    system_fonts(fontpaths, fontext) if fontpaths else []
)
manager = fm.FontManager()
fm.json_dump(manager, os.path.join(sys.argv[2], f"fontlist-v{fm.FontManager.__version__}.json"))
print(len(manager.ttflist) + len(manager.afmlist))
"""


class BuildError(RuntimeError):
    """A build failed; the message names the environment, the package when it can be told,
    and the tool's own reason."""


def build(
    declaration: Declaration,
    store: Store,
    toolchain: Toolchain,
    *,
    progress: Callable[[str], None] = lambda _line: None,
) -> tuple[Build, bool]:
    """(the build of `declaration`, whether it already existed)."""
    abi = toolchain.abi(declaration.runtime)
    existing = store.find(declaration, abi)
    if existing is not None:
        return existing, True
    os.makedirs(store.root, mode=0o755, exist_ok=True)
    with _locked(store.root):
        existing = store.find(declaration, abi)  # built by someone else while we waited
        if existing is not None:
            return existing, True
        id_ = build_id(declaration.runtime, declaration.packages, abi)
        work = tempfile.mkdtemp(prefix=f".building-{id_}-", dir=store.root)
        try:
            os.chmod(work, 0o755)
            old_umask = os.umask(0o022)  # readable by the workers' users
            try:
                if declaration.runtime is Runtime.PYTHON:
                    lock, tool = _pip(declaration, work, toolchain, progress)
                else:
                    lock, tool = _npm(declaration, work, toolchain, progress)
            finally:
                os.umask(old_umask)
            record = Build(
                directory=store.directory(declaration.runtime, id_),
                id=id_,
                runtime=declaration.runtime,
                packages=declaration.packages,
                abi=abi,
                lock=lock,
                size_bytes=_size(work),
                built_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                tool=tool,
            )
            with open(os.path.join(work, RECORD), "w", encoding="utf-8") as f:
                f.write(record.to_json() + "\n")
            _read_only(work)
            os.rename(work, record.directory)
        except BaseException:
            _remove(work)
            raise
    return record, False


def _pip(
    declaration: Declaration, work: str, toolchain: Toolchain, progress: Callable[[str], None]
) -> tuple[tuple[str, ...], str]:
    site = os.path.join(work, PYTHON_SITE)
    report = os.path.join(work, "pip-report.json")
    with open(os.path.join(work, "requirements.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{p}\n" for p in declaration.packages))
    python = toolchain.python_path
    version = _run([python, "-I", "-m", "pip", "--version"], declaration, "pip").split(" from ")[0]
    progress(f"{declaration.name}: {version}: installing {' '.join(declaration.packages)}")
    _run(
        [
            python, "-I", "-m", "pip", "install",
            "--target", site, "--ignore-installed", "--report", report,
            "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
            "--progress-bar", "off", "--quiet",
            *declaration.packages,
        ],
        declaration,
        "pip",
    )  # fmt: skip
    with open(report, encoding="utf-8") as f:
        installed = json.load(f).get("install", [])
    lock = []
    for item in installed:
        meta = item.get("metadata", {})
        line = f"{meta.get('name')}=={meta.get('version')}"
        digest = item.get("download_info", {}).get("archive_info", {}).get("hashes", {})
        if "sha256" in digest:
            line += f" --hash=sha256:{digest['sha256']}"
        lock.append(line)
    lock.sort(key=str.lower)
    with open(os.path.join(work, "requirements.lock"), "w", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lock))
    if os.path.isdir(os.path.join(site, "matplotlib")):
        cache = os.path.join(site, CACHE_DIR, "matplotlib")
        os.makedirs(cache)
        fonts = _run(
            [python, "-I", "-c", _MATPLOTLIB_FONTS, site, cache], declaration, "matplotlib"
        )
        progress(f"{declaration.name}: matplotlib's font list: {fonts.strip()} fonts")
    return tuple(line.split(" ", 1)[0] for line in lock), version


def _npm(
    declaration: Declaration, work: str, toolchain: Toolchain, progress: Callable[[str], None]
) -> tuple[tuple[str, ...], str]:
    npm = toolchain.npm()
    with open(os.path.join(work, "package.json"), "w", encoding="utf-8") as f:
        json.dump({"name": "sandboxd-environment", "private": True}, f)
    version = "npm " + _run([npm, "--version"], declaration, "npm").strip()
    progress(f"{declaration.name}: {version}: installing {' '.join(declaration.packages)}")
    _run(
        [
            npm, "install", "--prefix", work, "--save-exact", "--no-audit", "--no-fund",
            "--no-update-notifier", "--loglevel", "error",
            *declaration.packages,
        ],
        declaration,
        "npm",
    )  # fmt: skip
    with open(os.path.join(work, "package-lock.json"), encoding="utf-8") as f:
        packages = json.load(f).get("packages", {})
    lock = sorted(
        f"{key.rsplit('node_modules/', 1)[1]}@{value.get('version')}"
        for key, value in packages.items()
        if key.startswith("node_modules/")
    )
    return tuple(lock), version


def _run(argv: list[str], declaration: Declaration, tool: str) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"environment {declaration.name!r}: cannot run {tool}: {e}") from None
    if done.returncode != 0:
        raise BuildError(_failure(declaration, tool, done.stdout + "\n" + done.stderr))
    return done.stdout


def _failure(declaration: Declaration, tool: str, output: str) -> str:
    """Which package failed, when the tool's output names one of the declared ones, and the
    tool's own reason (its error lines)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [
        line
        for line in lines
        if line.startswith(("ERROR", "error", "npm error", "npm ERR!"))
        or "Error" in line.split(":", 1)[0]
    ]
    reason = errors or lines[-MAX_REASON_LINES:]
    named = [p for p in declaration.packages if any(_mentions(line, p) for line in reason)]
    which = (
        f"{tool} could not install {', '.join(named)}"
        if named
        else f"{tool} failed installing {', '.join(declaration.packages)}"
    )
    text = "\n  ".join(reason[:MAX_REASON_LINES]) or "(no output)"
    return f"environment {declaration.name!r}: {which}:\n  {text}"


def _mentions(line: str, spec: str) -> bool:
    lowered = line.lower()
    if spec.lower() in lowered:
        return True
    name = spec.lstrip("@").split("@", 1)[0] if spec.startswith("@") else spec
    for stop in "=<>!~[;@ ":
        name = name.split(stop, 1)[0]
    if spec.startswith("@"):
        name = "@" + name
    return bool(name) and name.lower() in lowered


def _size(root: str) -> int:
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _read_only(root: str) -> None:
    """No write bit anywhere below `root` (root itself included)."""
    for directory, dirs, files in os.walk(root, topdown=False):
        for name in [*files, *dirs]:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(path, stat.S_IMODE(mode) & ~0o222)
    os.chmod(root, stat.S_IMODE(os.stat(root).st_mode) & ~0o222)


def _remove(root: str) -> None:
    """A failed build's directory, write bits given back first."""
    if not os.path.exists(root):
        return
    for directory, _dirs, _files in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o755)
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _locked(root: str) -> Iterator[None]:
    fd = os.open(os.path.join(root, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
