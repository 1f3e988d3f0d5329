"""The tenants-file fields of the service attack review (SECURITY.md): a tenant's open calls, async queue and async memory
(`max_open_calls`, `max_queued_jobs`, `max_async_bytes`), each optional, an integer >= 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandboxd.cli.main import main
from sandboxd.tenants import TenantsFileError, load_tenants

TENANT = '[tenants.acme]\nkey_sha256 = "' + "ab" * 32 + '"\n'
FIELDS = ("max_open_calls", "max_queued_jobs", "max_async_bytes")


def load(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    tenant = load_tenants(path)["acme"]
    return {f: getattr(tenant, f) for f in FIELDS}


def test_absent_fields_mean_the_daemon_settings(tmp_path: Path) -> None:
    assert load(tmp_path, TENANT) == dict.fromkeys(FIELDS)


def test_fields_are_read(tmp_path: Path) -> None:
    text = TENANT + "max_open_calls = 4\nmax_queued_jobs = 10\nmax_async_bytes = 1048576\n"
    assert load(tmp_path, text) == {
        "max_open_calls": 4,
        "max_queued_jobs": 10,
        "max_async_bytes": 1048576,
    }


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ["0", "-1", "1.5", '"8"', "true", str(2**50)])
def test_bad_values_name_the_tenant_and_the_field(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(TenantsFileError, match=f"{field} must be an integer from 1 to") as info:
        load(tmp_path, TENANT + f"{field} = {value}\n")
    assert (info.value.tenant, info.value.field) == ("acme", field)


def test_tenants_add_writes_the_fields_and_list_shows_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "tenants.toml")
    argv = ["tenants", "add", "acme", "--file", path, "--max-open-calls", "4"]
    argv += ["--max-queued-jobs", "10", "--max-async-bytes", "1048576"]
    assert main(argv) == 0
    tenant = load_tenants(path)["acme"]
    assert (tenant.max_open_calls, tenant.max_queued_jobs, tenant.max_async_bytes) == (
        4,
        10,
        1048576,
    )
    capsys.readouterr()
    assert main(["tenants", "list", "--file", path]) == 0
    assert (
        "max_open_calls=4  max_queued_jobs=10  max_async_bytes=1048576" in capsys.readouterr().out
    )


def test_tenants_add_names_the_flag_of_a_bad_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "tenants.toml")
    assert main(["tenants", "add", "acme", "--file", path, "--max-queued-jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-queued-jobs '0'" in err and "must be an integer from 1 to" in err
