"""A tenant's environments in the tenants file, `tenants add --environments` and the
zero-config tenant (every environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandboxd.cli.main import main
from sandboxd.tenants import TenantsFileError, add_tenant, default_tenant, load_tenants

KEY = "a" * 64


def test_environments_are_read_and_default_to_none(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        f'[tenants.a]\nkey_sha256 = "{KEY}"\nenvironments = ["data", "integrations"]\n'
        f'[tenants.b]\nkey_sha256 = "{"b" * 64}"\n'
    )
    tenants = load_tenants(path)
    assert tenants["a"].environments == frozenset({"data", "integrations"})
    assert tenants["a"].may_use_environment("data")
    assert not tenants["a"].may_use_environment("other")
    assert tenants["b"].environments == frozenset()
    assert not tenants["b"].may_use_environment("data")
    assert default_tenant().may_use_environment("anything")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"data"', "environments must be a list of names"),
        ('["Data"]', "'Data' is not an environment name"),
        ('["data", "data"]', "a name is listed twice"),
    ],
)
def test_bad_environments_are_refused(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'[tenants.a]\nkey_sha256 = "{KEY}"\nenvironments = {value}\n')
    with pytest.raises(TenantsFileError) as info:
        load_tenants(path)
    assert info.value.field == "environments" and message in str(info.value)


def test_tenants_add_and_list_environments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "t.toml")
    assert main(["tenants", "add", "acme", "--file", path, "--environments", "data,js"]) == 0
    assert load_tenants(path)["acme"].environments == frozenset({"data", "js"})
    assert main(["tenants", "list", "--file", path]) == 0
    assert "environments=data,js" in capsys.readouterr().out
    code = main(["tenants", "add", "bad", "--file", path, "--environments", "Data"])
    assert code == 2
    assert "--environments 'Data'" in capsys.readouterr().err
    add_tenant(path, "none")
    assert load_tenants(path)["none"].environments == frozenset()
