"""sandboxd.preflight: the startup checks and their messages (the container test runs them
for real under podman's masked /proc)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxd import preflight


def test_this_host_passes() -> None:
    assert preflight.check() == []


def test_no_new_privs_is_named_with_the_flag(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nNoNewPrivs:\t1\n")
    problems = preflight._helpers(str(status))
    assert [p.what for p in problems if p.what == "no_new_privs"] == ["no_new_privs"]
    assert "--security-opt no-new-privileges" in preflight.message(problems)
    assert "allowPrivilegeEscalation: true" in preflight.message(problems)


def test_proc_message_names_the_flags() -> None:
    text = preflight.PROC_FIX.format(error="EPERM")
    assert "--security-opt systempaths=unconfined" in text
    assert "procMount: Unmasked" in text


def test_serve_exits_2_fast_when_proc_cannot_be_mounted(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandboxd.cli import main as cli

    monkeypatch.setattr(
        preflight,
        "_namespaces",
        lambda: [preflight.Problem("/proc", preflight.PROC_FIX.format(error="EPERM"))],
    )
    assert cli.main(["serve", "--listen", "127.0.0.1:0"]) == 2


def test_hostname_message_names_the_profile_command() -> None:
    text = preflight.HOSTNAME_FIX.format(error="EPERM")
    assert "--security-opt seccomp=PROFILE" in text and "`sandboxd seccomp-profile`" in text
    assert "type: Localhost" in text


# In a child that a seccomp filter forbids sethostname (as podman's default profile does
# without CAP_SYS_ADMIN), the preflight names exactly that problem.
_HOSTNAME_DENIED = """
import errno, json
try:
    import seccomp
except ImportError:
    import pyseccomp as seccomp
from sandboxd import preflight
f = seccomp.SyscallFilter(seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(errno.EPERM), "sethostname")
f.load()
print(json.dumps([[p.what, p.message] for p in preflight.check()]))
"""


def test_a_profile_denying_sethostname_is_found() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _HOSTNAME_DENIED], capture_output=True, text=True, check=True
    )
    problems = json.loads(out.stdout)
    assert [what for what, _ in problems] == ["hostname"]
    assert "(EPERM: Operation not permitted)" in problems[0][1]
    assert "`sandboxd seccomp-profile`" in problems[0][1]
