"""sandboxd.container_seccomp: the container profile derived from a runtime's default (the
container test runs podman with the profile made from podman's real default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandboxd.cli import main as cli
from sandboxd.container_seccomp import JAIL_SYSCALLS, ProfileError, derive

# Shaped like podman's and docker's defaults: an allow list, conditional rules by capability
# and by argument, an errno rule, the older single-name form.
BASE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
    "syscalls": [
        {"names": ["read", "write", "mount", "clone3"], "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["sethostname", "setdomainname"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {
            "names": ["sethostname", "setdomainname"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
        },
        {"name": "unshare", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"name": "ptrace", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}},
    ],
}


def rules_naming(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r.get("names", [r.get("name")])]


def test_each_jail_syscall_has_exactly_one_unconditional_allow() -> None:
    profile = derive(BASE)
    for name in JAIL_SYSCALLS:
        rules = rules_naming(profile, name)
        assert len(rules) == 1, (name, rules)
        assert rules[0]["action"] == "SCMP_ACT_ALLOW"
        assert not rules[0].get("args") and not rules[0].get("includes")


def test_everything_else_is_unchanged() -> None:
    profile = derive(BASE)
    assert {k: v for k, v in profile.items() if k != "syscalls"} == {
        k: v for k, v in BASE.items() if k != "syscalls"
    }
    # setdomainname keeps both its rules; read/write keep theirs; ptrace stays conditional.
    assert [r["action"] for r in rules_naming(profile, "setdomainname")] == [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
    ]
    assert rules_naming(profile, "setdomainname")[1]["excludes"] == {"caps": ["CAP_SYS_ADMIN"]}
    assert rules_naming(profile, "read")[0]["names"] == ["read", "write"]
    assert rules_naming(profile, "ptrace") == [BASE["syscalls"][5]]
    assert not any(r.get("name") == "unshare" for r in profile["syscalls"])


def test_the_base_is_not_modified() -> None:
    before = json.dumps(BASE, sort_keys=True)
    derive(BASE)
    assert json.dumps(BASE, sort_keys=True) == before


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ([], "no string 'defaultAction'"),
        ({"syscalls": []}, "no string 'defaultAction'"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}, "'syscalls' is not a list"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"]}]}, "syscalls[0]"),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]},
            "syscalls[0] names no system call",
        ),
    ],
)
def test_what_is_not_a_profile_is_refused(base: Any, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        derive(base)


def test_command_writes_the_file_or_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, out = tmp_path / "base.json", tmp_path / "out.json"
    base.write_text(json.dumps(BASE))
    assert cli.main(["seccomp-profile", "--base", str(base), "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == derive(BASE)
    assert cli.main(["seccomp-profile", "--base", str(base)]) == 0
    assert json.loads(capsys.readouterr().out) == derive(BASE)
    assert cli.main(["seccomp-profile", "--base", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    base.write_text("{not json")
    assert cli.main(["seccomp-profile", "--base", str(base)]) == 2
    assert "is not JSON" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.json", "out.json"]
