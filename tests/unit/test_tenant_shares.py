"""The tenants-file fields of issue 19: a tenant's open calls, async queue and async memory
(`max_open_calls`, `max_queued_jobs`, `max_async_bytes`), each optional, an integer >= 1."""

from __future__ import annotations

from pathlib import Path

import pytest

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
