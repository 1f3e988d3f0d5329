"""The daemon under fuzz: one real `sandboxd serve` for the session, on port 0, with a tenants
file and a small maximum message size (256 KiB) so that "too big" is cheap to reach.

Tenants:
    fuzz    both runtimes, at most 8 executions at once
    pyonly  Python only (JavaScript is PERMISSION_DENIED)
    async   both runtimes: Submit's tenant, so that its queued jobs never take fuzz's slots

After every test (a batch of examples) `serving` checks that the daemon process is alive, still
runs a normal Execute to OK with the right output, and has logged nothing at ERROR (the
servicer's INTERNAL logs "internal error" there, and grpcio logs its own deserialization
failures there too). After the session the daemon drains (exit 0) and nothing of it is left: no
process of its tree, no worker cgroup of its zygote, no temp dir.

Examples: `budget(n)` per test, no example database. The inputs come from one seed per run:
`SANDBOXD_FUZZ_SEED` if set, else the UTC date (YYYYMMDD), so CI explores new inputs every day
and any run is reproducible: the seed is printed at the start of the fuzz session and in the
terminal summary (`SANDBOXD_FUZZ_SEED=N python3 -m pytest tests/fuzz` repeats it exactly;
a failing example is also printed with its `@reproduce_failure` blob).
`HYPOTHESIS_PROFILE=long python3 -m pytest tests/fuzz` runs 20x as many.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import pytest
from conftest import CGROUP_DIRS
from e2e.daemon import Daemon, start, tenants_file
from hypothesis import HealthCheck, seed, settings

from sandboxd_client import Client, Verdict

MAX_MESSAGE_BYTES = 256 * 1024
LONG_FACTOR = 20

settings.register_profile(
    "fuzz-ci",
    derandomize=False,  # the seed below decides
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
settings.register_profile("long", settings.get_profile("fuzz-ci"))
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
FUZZ = settings.get_profile("long" if LONG else "fuzz-ci")
SEED = int(
    os.environ.get("SANDBOXD_FUZZ_SEED") or datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
)
SEED_NOTE = (
    f"fuzz seed {SEED} (reproduce: SANDBOXD_FUZZ_SEED={SEED} python3 -m pytest tests/fuzz; "
    "without it the seed is the UTC date, so every day explores new inputs)"
)

# The tenants of the fuzz daemon and the runtimes each may use (the oracle's PERMISSION_DENIED).
TENANTS: dict[str, dict[str, object]] = {
    "fuzz": {"max_concurrent_executions": 8},
    "pyonly": {"runtimes": ["python"]},
    "async": {"max_concurrent_executions": 4},
}
BOTH = frozenset({"python", "javascript"})
TENANT_RUNTIMES = {
    name: frozenset(str(r) for r in spec["runtimes"]) if "runtimes" in spec else BOTH  # type: ignore[attr-defined]
    for name, spec in TENANTS.items()
}


def budget(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A fuzz test running `examples` examples (20x in the long mode) from the run's seed."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        limited = settings(FUZZ, max_examples=examples * (LONG_FACTOR if LONG else 1))(test)
        return seed(SEED)(limited)  # type: ignore[no-any-return]

    return decorate


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(SEED_NOTE)


@dataclass(repr=False)
class FuzzDaemon:
    daemon: Daemon
    keys: dict[str, str]

    def __repr__(self) -> str:  # in hypothesis' falsifying examples
        return f"FuzzDaemon({self.address})"

    @property
    def address(self) -> str:
        return self.daemon.address

    def metadata(self, tenant: str = "fuzz") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[tenant]}"),)

    def errors_logged(self) -> list[dict[str, object]]:
        return [e for e in list(self.daemon.logs) if e.get("level") in ("ERROR", "CRITICAL")]

    def assert_serving(self) -> None:
        assert self.daemon.proc.poll() is None, "the daemon died:\n" + "".join(
            self.daemon.raw_stderr[-30:]
        )
        with Client(self.address, api_key=self.keys["fuzz"]) as client:
            result = client.execute("python", "print(6 * 7)")
        assert result.verdict is Verdict.OK, result
        assert result.stdout == b"42\n"
        assert not self.errors_logged(), self.errors_logged()


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _worker_cgroups(zygote_pids: set[int]) -> list[str]:
    found = []
    for base in CGROUP_DIRS:
        parent = os.path.join(base, "sandboxd")
        if not os.path.isdir(parent):
            continue
        for name in os.listdir(parent):
            owner = name[1:].split("-", 1)[0]
            if name.startswith("z") and owner.isdigit() and int(owner) in zygote_pids:
                found.append(os.path.join(parent, name))
    return found


@pytest.fixture(scope="session")
def fuzz_daemon() -> Iterator[FuzzDaemon]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-fuzz-") as tmp:
        path = os.path.join(tmp, "tenants.toml")
        keys = tenants_file(path, TENANTS)
        print(f"\n{SEED_NOTE}")
        daemon = start(["--tenants", path, "--max-message-bytes", str(MAX_MESSAGE_BYTES)], warm=2)
        fuzz = FuzzDaemon(daemon, keys)
        try:
            fuzz.assert_serving()
            yield fuzz
        finally:
            tree = _tree(daemon.proc.pid)
            zygotes = {p.pid for p in tree if "sandboxd_pool._in_zygote" in " ".join(_cmd(p))}
            rc = daemon.stop()
            assert rc == 0, "".join(daemon.raw_stderr[-30:])
            alive = [p.pid for p in tree if _still_running(p)]
            assert not alive, f"processes of the daemon left behind: {alive}"
            assert zygotes, "the daemon's zygote was not found: the leftover check saw nothing"
            assert not _worker_cgroups(zygotes), _worker_cgroups(zygotes)
            assert not fuzz.errors_logged(), fuzz.errors_logged()
    assert not os.path.exists(tmp)


def _cmd(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _still_running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(autouse=True)
def serving(fuzz_daemon: FuzzDaemon) -> Iterator[FuzzDaemon]:
    """Each test is a batch: afterwards the daemon is alive and still serves."""
    yield fuzz_daemon
    fuzz_daemon.assert_serving()
