"""The tenants file's egress fields (`egress`, `egress_private_ranges`, `[[egress_headers]]`):
loading, every refusal naming the field, `tenants add --egress`, `tenants list` without the
secret, and a file with headers surviving edits of other tenants."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandboxd.cli import main as cli
from sandboxd.tenants import TenantsFileError, add_tenant, load_tenants, remove_tenant
from sandboxd_pool.egress import EgressHeader, EgressPolicy, EgressRule

HASH = "ab" * 32
A = f'[tenants.acme]\nkey_sha256 = "{HASH}"\n'
FULL = (
    A
    + 'egress = ["api.example.test:8443", "*.example.org:443", "10.1.0.0/16:5432"]\n'
    + 'egress_private_ranges = ["127.0.0.0/8", "10.1.0.0/16"]\n'
    + '[[tenants.acme.egress_headers]]\nhost = "api.example.test"\nname = "Authorization"\n'
    + 'value = "Bearer s3cret"\n'
    + '[[tenants.acme.egress_headers]]\nhost = "*.example.org"\nname = "X-Api-Key"\n'
    + 'value = "k-123"\n'
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    return path


def test_the_egress_fields_load(tmp_path: Path) -> None:
    tenant = load_tenants(write(tmp_path, FULL))["acme"]
    assert tenant.egress == EgressPolicy(
        rules=(
            EgressRule("api.example.test", 8443),
            EgressRule("*.example.org", 443),
            EgressRule("10.1.0.0/16", 5432),
        ),
        private_ranges=("127.0.0.0/8", "10.1.0.0/16"),
        headers=(
            EgressHeader("api.example.test", "Authorization", "Bearer s3cret"),
            EgressHeader("*.example.org", "X-Api-Key", "k-123"),
        ),
    )
    assert "s3cret" not in repr(tenant) and "k-123" not in repr(tenant)


def test_no_rules_no_egress(tmp_path: Path) -> None:
    assert load_tenants(write(tmp_path, A))["acme"].egress is None
    assert load_tenants(write(tmp_path, A + "egress = []\n"))["acme"].egress is None


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ('egress = "api.test:443"\n', "egress", 'egress must be a list of "HOST:PORT" strings'),
        ("egress = [443]\n", "egress", 'egress must be a list of "HOST:PORT" strings'),
        ('egress = ["api.test"]\n', "egress[0]", "egress[0]: 'api.test': write a destination as HOST:PORT"),
        ('egress = ["a.test:1", "b.test:99999"]\n', "egress[1]", "the port must be a number from 1 to 65535"),
        ('egress = ["*:443"]\n', "egress[0]", "a wildcard is only '*.' at the start of a name"),
        ('egress = ["a.test:1"]\negress_private_ranges = ["10.0.0.1/8"]\n', "egress_private_ranges", "has host bits set"),
        ('egress = ["a.test:1"]\negress_private_ranges = "10.0.0.0/8"\n', "egress_private_ranges", "must be a list"),
        ('egress_private_ranges = ["10.0.0.0/8"]\n', "egress_private_ranges", "without egress rules has no effect"),
        (
            'egress = ["a.test:1"]\n[[tenants.acme.egress_headers]]\nhost = "a.test"\nname = "X"\n',
            "egress_headers[0]", "egress_headers[0]: value is missing",
        ),
        (
            'egress = ["a.test:1"]\n[[tenants.acme.egress_headers]]\nhost = "a.test"\nname = "X"\nvalue = "v"\nport = 1\n',
            "egress_headers[0]", "unknown key 'port'",
        ),
        (
            'egress = ["a.test:1"]\n[[tenants.acme.egress_headers]]\nhost = "a.test"\nname = "Host"\nvalue = "v"\n',
            "egress_headers[0]", "the proxy sets that header itself",
        ),
        (
            'egress = ["a.test:1"]\n[[tenants.acme.egress_headers]]\nhost = "a.test"\nname = "X"\nvalue = "a\\r\\nB: c"\n',
            "egress_headers[0]", "holds a control character",
        ),
        (
            'egress = ["a.test:1"]\n[[tenants.acme.egress_headers]]\nhost = "b.test"\nname = "X"\nvalue = "v"\n',
            "egress_headers[0].host", "b.test is not within the tenant's egress rules",
        ),
        (
            'egress = ["a.example.org:1"]\n[[tenants.acme.egress_headers]]\nhost = "*.example.org"\nname = "X"\nvalue = "v"\n',
            "egress_headers[0].host", "*.example.org is not within the tenant's egress rules",
        ),
        (
            'egress = ["10.0.0.0/8:1"]\n[[tenants.acme.egress_headers]]\nhost = "10.0.0.1"\nname = "X"\nvalue = "v"\n',
            "egress_headers[0]", "headers are bound to names, not addresses",
        ),
        ('egress = ["a.test:1"]\negress_headers = 5\n', "egress_headers", "must be [[tenants.NAME.egress_headers]] tables"),
    ],
)  # fmt: skip
def test_egress_refusals_name_the_field(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    with pytest.raises(TenantsFileError, match=re.escape(message)) as caught:
        load_tenants(write(tmp_path, A + text))
    assert (caught.value.tenant, caught.value.field) == ("acme", field)
    assert "'v'" not in str(caught.value)  # a header's value is never in a message


def test_tenants_add_takes_egress_rules_and_list_never_shows_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, FULL)
    rc = cli.main(
        [
            "tenants", "add", "beta", "--file", str(path),
            "--egress", "api.example.test:443", "--egress", "*.example.net:443",
            "--egress-private-range", "10.0.0.0/8",
        ]
    )  # fmt: skip
    assert rc == 0
    beta = load_tenants(path)["beta"]
    assert beta.egress == EgressPolicy.parse(
        ["api.example.test:443", "*.example.net:443"], ["10.0.0.0/8"]
    )
    assert load_tenants(path)["acme"].egress is not None  # the other tenant's headers kept
    capsys.readouterr()
    assert cli.main(["tenants", "list", "--file", str(path)]) == 0
    listed = capsys.readouterr().out
    assert "egress=api.example.test:8443,*.example.org:443,10.1.0.0/16:5432" in listed
    assert "egress_headers=api.example.test:Authorization,*.example.org:X-Api-Key" in listed
    assert "s3cret" not in listed and "k-123" not in listed
    rc = cli.main(["tenants", "add", "gamma", "--file", str(path), "--egress", "bad"])
    assert rc == 2
    assert "--egress 'bad': egress[0]: 'bad': write a destination as HOST:PORT" in (
        capsys.readouterr().err
    )


def test_removing_another_tenant_keeps_the_headers(tmp_path: Path) -> None:
    path = write(tmp_path, FULL + f'\n[tenants.beta]\nkey_sha256 = "{"cd" * 32}"\n')
    before = load_tenants(path)["acme"]
    remove_tenant(path, "beta")
    assert load_tenants(path) == {"acme": before}
    add_tenant(path, "gamma")
    assert load_tenants(path)["acme"] == before


def test_add_refuses_egress_the_file_would_refuse(tmp_path: Path) -> None:
    path = write(tmp_path, A)
    with pytest.raises(TenantsFileError, match="egress_private_ranges without egress rules"):
        add_tenant(path, "beta", egress_private_ranges=["10.0.0.0/8"])
    assert path.read_text() == A
