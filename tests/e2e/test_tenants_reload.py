"""SIGHUP reloads the tenants file of the real daemon: keys added and removed and changed
settings take effect; a file that does not load keeps the tenants of before and the log says
why; executions in flight finish; concurrency counts carry over by tenant name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from sandboxd.tenants import hash_key, new_key
from sandboxd_client import (
    NO_RETRY,
    Client,
    ExecuteResult,
    Output,
    PermissionDenied,
    QuotaExceeded,
    Unauthenticated,
    Verdict,
)

from .daemon import Daemon, start

RELOADED = "tenants reloaded"
NOT_RELOADED = "tenants file not reloaded: still serving the tenants loaded before"
# prints, then runs long enough for the test to reload while it runs
LONG = "import time\nprint('running', flush=True)\ntime.sleep(3)\nprint('done')\n"


def write_tenants(
    path: str, keys: dict[str, str], tenants: Mapping[str, Mapping[str, Any]]
) -> None:
    """The whole file, by hand: {name: fields}; each name's key is made once and kept."""
    lines = []
    for name, fields in tenants.items():
        key = keys.setdefault(name, new_key())
        lines += [f"[tenants.{name}]", f'key_sha256 = "{hash_key(key)}"']
        lines += [f"{field} = {toml(value)}" for field, value in fields.items()]
        lines.append("")
    write_text(path, "\n".join(lines))


def write_text(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


@dataclass
class Reloading:
    daemon: Daemon
    path: str
    keys: dict[str, str]

    def write(self, tenants: Mapping[str, Mapping[str, Any]]) -> None:
        write_tenants(self.path, self.keys, tenants)

    def hup(self, msg: str) -> dict[str, Any]:
        """SIGHUP, then the next log entry `msg` (after those already there)."""
        seen = sum(1 for e in list(self.daemon.logs) if e.get("msg") == msg)
        self.daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            entries = [e for e in list(self.daemon.logs) if e.get("msg") == msg]
            if len(entries) > seen:
                return entries[seen]
            assert self.daemon.proc.poll() is None, "".join(self.daemon.raw_stderr[-20:])
            time.sleep(0.02)
        raise AssertionError(f"no {msg!r} after SIGHUP:\n" + "".join(self.daemon.raw_stderr[-20:]))

    def client(self, name: str) -> Client:
        return Client(self.daemon.address, api_key=self.keys[name], retry=NO_RETRY)


def toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return str(value)


@pytest.fixture(scope="module")
def reloading() -> Iterator[Reloading]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-reload-") as tmp:
        path, keys = os.path.join(tmp, "tenants.toml"), {}
        write_tenants(
            path,
            keys,
            {
                "alpha": {"runtimes": ["python", "javascript"]},
                "beta": {"max_concurrent_executions": 4},
            },
        )
        daemon = start(["--tenants", path])
        yield Reloading(daemon, path, keys)
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])


def ok(client: Client, runtime: str = "python") -> None:
    code = "print(1)" if runtime == "python" else "console.log(1)"
    result = client.execute(runtime, code, timeout_s=60)
    assert result.verdict is Verdict.OK, result


def test_keys_added_and_removed_and_settings_changed(reloading: Reloading) -> None:
    r = reloading
    with r.client("alpha") as alpha, r.client("beta") as beta:
        ok(alpha, "javascript")
        ok(beta)
        r.write(
            {
                "alpha": {"runtimes": ["python"]},  # changed: no JavaScript any more
                "gamma": {"max_concurrent_executions": 2},  # added
            }  # beta removed
        )
        entry = r.hup(RELOADED)
        assert entry["level"] == "INFO"
        assert (entry["added"], entry["removed"], entry["changed"]) == (
            ["gamma"],
            ["beta"],
            ["alpha"],
        )
        assert entry["tenants"] == ["alpha", "gamma"] and entry["file"] == r.path
        with pytest.raises(Unauthenticated) as info:
            beta.execute("python", "print(1)", timeout_s=60)
        assert info.value.message == "unknown API key"
        with pytest.raises(PermissionDenied):
            alpha.execute("javascript", "console.log(1)", timeout_s=60)
        ok(alpha)
    with r.client("gamma") as gamma:
        ok(gamma, "javascript")


CURRENT = {"alpha": {"runtimes": ["python"]}, "gamma": {"max_concurrent_executions": 2}}


def _bad_toml(r: Reloading) -> str:
    write_text(r.path, "[tenants.alpha\n")
    return "not valid TOML"


def _bad_field(r: Reloading) -> str:
    r.write({**CURRENT, "gamma": {"max_concurrent_executions": 0}})
    return "tenant 'gamma': max_concurrent_executions must be an integer >= 1, got 0"


def _same_key(r: Reloading) -> str:
    r.write(CURRENT)
    with open(r.path, "a") as f:
        f.write(f'[tenants.delta]\nkey_sha256 = "{hash_key(r.keys["alpha"])}"\n')
    return "tenant 'delta': key_sha256 is the same as tenant 'alpha' has"


def _bad_hash(r: Reloading) -> str:
    write_text(r.path, "[tenants.alpha]\nkey_sha256 = 'abc'\n")
    return "tenant 'alpha': key_sha256 must be 64 hex digits"


def _missing(r: Reloading) -> str:
    os.unlink(r.path)
    return "no such file"


@pytest.mark.parametrize(
    "breaks",
    [_bad_toml, _bad_field, _same_key, _bad_hash, _missing],
    ids=["toml", "field", "same-key", "bad-hash", "missing"],
)
def test_a_broken_file_keeps_the_tenants_of_before(
    reloading: Reloading, breaks: Callable[[Reloading], str]
) -> None:
    r = reloading
    r.write(CURRENT)
    r.hup(RELOADED)
    error = breaks(r)
    entry = r.hup(NOT_RELOADED)
    assert entry["level"] == "ERROR"
    assert entry["file"] == r.path and entry["tenants"] == ["alpha", "gamma"]
    assert entry["error"].startswith(r.path + ": "), entry
    assert error in entry["error"], entry
    with r.client("gamma") as gamma, r.client("alpha") as alpha:
        ok(gamma)  # still served, with the settings of before
        with pytest.raises(PermissionDenied):
            alpha.execute("javascript", "console.log(1)", timeout_s=60)
    r.write(CURRENT)  # and a good file is taken again
    r.hup(RELOADED)


def _started(events: Iterator[object]) -> None:
    for event in events:
        if isinstance(event, Output) and event.data == b"running\n":
            return
    raise AssertionError("the execution never started")


def _rest(events: Iterator[object]) -> tuple[bytes, ExecuteResult]:
    """The stdout after "running" and the final result (a stream's result has no output)."""
    *chunks, last = events
    assert isinstance(last, ExecuteResult)
    stdout = b"".join(c.data for c in chunks if isinstance(c, Output) and c.stream == "stdout")
    return stdout, last


def test_in_flight_executions_finish_and_concurrency_carries_over(reloading: Reloading) -> None:
    """A removed tenant's running execution finishes OK after the reload (its key is refused
    at once); a tenant whose limit drops to 1 while one of its executions runs is at its
    limit: the running one still counts."""
    r = reloading
    r.write({"alpha": {"max_concurrent_executions": 2}, "gamma": {}})
    r.hup(RELOADED)
    with r.client("alpha") as alpha, r.client("gamma") as gamma:
        alpha_events = iter(alpha.stream("python", LONG, timeout_s=60))
        gamma_events = iter(gamma.stream("python", LONG, timeout_s=60))
        _started(alpha_events)
        _started(gamma_events)
        r.write({"alpha": {"max_concurrent_executions": 1}})  # gamma removed
        reloaded = r.hup(RELOADED)
        with pytest.raises(QuotaExceeded) as info:
            alpha.execute("python", "print(1)", timeout_s=60)
        assert "limit (max_concurrent_executions) is 1" in info.value.message
        with pytest.raises(Unauthenticated):
            gamma.execute("python", "print(1)", timeout_s=60)
        results = []
        for events in (alpha_events, gamma_events):
            stdout, result = _rest(events)
            assert result.verdict is Verdict.OK and stdout == b"done\n", result
            results.append(result)
        ok(alpha)  # its slot is free again
    finished = {
        e["execution_id"]: e["time"]
        for e in list(r.daemon.logs)
        if e.get("msg") == "execution finished"
    }
    for result in results:  # the reload happened while they ran
        assert reloaded["time"] < finished[result.execution_id]
    r.write(CURRENT)
    r.hup(RELOADED)


def test_zero_config_survives_sighup() -> None:
    """No file to reload: logged, and the daemon goes on (SIGHUP used to end it)."""
    daemon = start(["--warm-workers", "1"])
    try:
        daemon.proc.send_signal(signal.SIGHUP)
        entry = daemon.wait_for_log_entry(
            "SIGHUP ignored: zero-config, there is no tenants file to reload"
        )
        assert entry["level"] == "WARNING"
        with Client(daemon.address) as c:
            assert c.execute("python", "print(1)", timeout_s=60).verdict is Verdict.OK
    finally:
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])


def test_a_tenant_added_by_the_cli_is_served_after_sighup(reloading: Reloading) -> None:
    """`sandboxd tenants add` with the quota flags, then SIGHUP: the new tenant's rate quota,
    runtimes and ceiling apply at once."""
    r = reloading
    r.write(CURRENT)
    r.hup(RELOADED)
    added = subprocess.run(
        [
            sys.executable, "-m", "sandboxd", "tenants", "add", "delta", "--file", r.path,
            "--runtimes", "python", "--max-concurrent", "1",
            "--max-executions-per-second", "0.2", "--max-cpu-seconds-per-minute", "30",
            "--ceiling", "wall_time_ms=1000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    r.keys["delta"] = added.stdout.splitlines()[-1]
    assert r.hup(RELOADED)["added"] == ["delta"]
    with r.client("delta") as delta:
        slow = delta.execute("python", "import time; time.sleep(5)", timeout_s=60)
        assert slow.verdict is Verdict.TIMEOUT, slow  # clamped to the 1000 ms ceiling
        with pytest.raises(QuotaExceeded) as info:
            delta.execute("python", "print(1)", timeout_s=60)
        assert "max_executions_per_second" in info.value.message
        assert info.value.retry_after_s is not None and info.value.retry_after_s > 1
    r.write(CURRENT)
    r.hup(RELOADED)
