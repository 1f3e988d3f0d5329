"""The tenants file: loading and validation, key handling, limits, atomic edits."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from sandboxd.tenants import (
    Tenant,
    TenantDirectory,
    TenantsFileError,
    add_tenant,
    default_tenant,
    edit,
    hash_key,
    load_tenants,
    new_key,
    remove_tenant,
)
from sandboxd_pool.types import CEILING_LIMITS, DEFAULT_LIMITS, Limits, Runtime

HASH = "ab" * 32
OTHER_HASH = "cd" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- keys


def test_hash_key_is_hex_sha256() -> None:
    assert hash_key("test") == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_new_keys_are_prefixed_random_and_distinct() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith("sbx_")
        assert len(key) == 4 + 43  # 32 bytes of URL-safe base64, unpadded


# --------------------------------------------------------------------------- loading


def test_load_full_example(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[tenants.acme]
key_sha256 = "{HASH.upper()}"
runtimes = ["python"]
max_concurrent_executions = 3
network_allowed = false
[tenants.acme.default_limits]
wall_time_ms = 5000
[tenants.acme.ceiling_limits]
memory_bytes = 1073741824
wall_time_ms = 20000
""",
    )
    acme = load_tenants(path)["acme"]
    assert acme == Tenant(
        name="acme",
        key_sha256=HASH,  # normalized to lowercase
        runtimes=frozenset({Runtime.PYTHON}),
        default_limits=Limits(wall_time_ms=5000).merged_over(DEFAULT_LIMITS),
        ceiling_limits=Limits(memory_bytes=1 << 30, wall_time_ms=20000).merged_over(CEILING_LIMITS),
        max_concurrent_executions=3,
        network_allowed=False,
    )


def test_minimal_tenant_gets_the_built_in_values(tmp_path: Path) -> None:
    acme = load_tenants(write(tmp_path, f'[tenants.acme]\nkey_sha256 = "{HASH}"\n'))["acme"]
    assert acme.runtimes == frozenset(Runtime)
    assert acme.default_limits == DEFAULT_LIMITS
    assert acme.ceiling_limits == CEILING_LIMITS
    assert acme.max_concurrent_executions == 8
    assert acme.network_allowed is False


def test_built_in_default_above_a_tenant_ceiling_is_clamped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[tenants.acme]\nkey_sha256 = "{HASH}"\n'
        "[tenants.acme.ceiling_limits]\nwall_time_ms = 1000\n",
    )
    assert load_tenants(path)["acme"].default_limits.wall_time_ms == 1000


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "[tenants]\n"])
def test_a_file_without_tenants_is_allowed(tmp_path: Path, text: str) -> None:
    assert load_tenants(write(tmp_path, text)) == {}


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TenantsFileError, match=r"nope\.toml: no such file"):
        load_tenants(tmp_path / "nope.toml")


A = f'[tenants.acme]\nkey_sha256 = "{HASH}"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenants.acme\n", r"not valid TOML"),
        ("port = 1\n", r"unknown top-level key 'port'"),
        ("tenants = 1\n", r"'tenants' must be a table"),
        ("[tenants]\nacme = 1\n", r"tenant 'acme': \[tenants.acme\] must be a table"),
        (
            f'[tenants.Acme]\nkey_sha256 = "{HASH}"\n',
            r"invalid tenant name 'Acme': use 1-63 lowercase",
        ),
        (f'[tenants."a.b"]\nkey_sha256 = "{HASH}"\n', r"invalid tenant name 'a\.b'"),
        (f'[tenants.{"a" * 64}]\nkey_sha256 = "{HASH}"\n', r"invalid tenant name"),
        (f'[tenants._x]\nkey_sha256 = "{HASH}"\n', r"invalid tenant name '_x'"),
        ("[tenants.acme]\nruntimes = ['python']\n", r"tenant 'acme': key_sha256 is missing"),
        ('[tenants.acme]\nkey_sha256 = "abc"\n', r"tenant 'acme': key_sha256 must be 64 hex"),
        ("[tenants.acme]\nkey_sha256 = 5\n", r"key_sha256 must be 64 hex digits .*, got 5"),
        (A + "colour = 'red'\n", r"tenant 'acme': unknown key 'colour'"),
        (A + "runtimes = []\n", r"tenant 'acme': runtimes must be a non-empty list"),
        (A + "runtimes = 'python'\n", r"runtimes must be a non-empty list"),
        (A + "runtimes = ['ruby']\n", r"tenant 'acme': runtimes: unknown runtime 'ruby'"),
        (A + "runtimes = ['python', 'python']\n", r"runtimes: 'python' is listed twice"),
        (
            A + "max_concurrent_executions = 0\n",
            r"^tenants\.toml: tenant 'acme': max_concurrent_executions must be an integer >= 1, "
            r"got 0$",
        ),
        (A + "max_concurrent_executions = '4'\n", r"max_concurrent_executions must be an integer"),
        (A + "max_concurrent_executions = true\n", r"max_concurrent_executions must be an int"),
        (A + "max_concurrent_executions = 2.5\n", r"max_concurrent_executions must be an int"),
        (A + "network_allowed = 'no'\n", r"network_allowed must be true or false"),
        (
            A + "network_allowed = true\n",
            r"tenant 'acme': network_allowed = true is not supported: workers have no network of "
            r'their own\. Give the tenant egress rules instead \(egress = \["HOST:PORT"\], '
            r"docs/egress\.md\) and remove the line or set it to false\.",
        ),
        (A + "default_limits = 5\n", r"default_limits must be a table"),
        (
            A + "[tenants.acme.default_limits]\ncpu_ms = 5\n",
            r"tenant 'acme': default_limits: unknown limit 'cpu_ms'",
        ),
        (
            A + "[tenants.acme.default_limits]\nwall_time_ms = 0\n",
            r"default_limits\.wall_time_ms must be an integer >= 1, got 0 \(omit it",
        ),
        (
            A + "[tenants.acme.ceiling_limits]\nmemory_bytes = 1024\n",
            r"ceiling_limits\.memory_bytes must be an integer >= 67108864, got 1024",
        ),
        (
            A + "[tenants.acme.ceiling_limits]\nmax_processes = '8'\n",
            r"ceiling_limits\.max_processes must be an integer",
        ),
        (
            A + "[tenants.acme.ceiling_limits]\nwall_time_ms = 300001\n",
            r"tenant 'acme': ceiling_limits\.wall_time_ms = 300001 is above this build's "
            r"ceiling of 300000",
        ),
        (
            A + "[tenants.acme.default_limits]\nwall_time_ms = 300001\n",
            r"default_limits\.wall_time_ms = 300001 is above this build's ceiling of 300000",
        ),
        (
            A + "[tenants.acme.default_limits]\nwall_time_ms = 5000\n"
            "[tenants.acme.ceiling_limits]\nwall_time_ms = 2000\n",
            r"tenant 'acme': default_limits\.wall_time_ms = 5000 is above the tenant's "
            r"ceiling_limits\.wall_time_ms = 2000",
        ),
        (
            A + f'[tenants.beta]\nkey_sha256 = "{HASH.upper()}"\n',
            r"tenant 'beta': key_sha256 is the same as tenant 'acme' has; every tenant needs its own",
        ),
    ],
)
def test_validation_errors_name_file_tenant_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tenants.toml").write_text(text)
    with pytest.raises(TenantsFileError, match=message) as info:
        load_tenants("tenants.toml")
    assert str(info.value).startswith("tenants.toml: ")


def test_error_carries_tenant_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, A + "max_concurrent_executions = 0\n")
    with pytest.raises(TenantsFileError) as info:
        load_tenants(path)
    assert (info.value.tenant, info.value.field) == ("acme", "max_concurrent_executions")
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- limits


def make_tenant(**ceiling: int) -> Tenant:
    return Tenant(
        name="acme",
        key_sha256=HASH,
        runtimes=frozenset(Runtime),
        default_limits=Limits(
            wall_time_ms=1000,
            cpu_time_ms=1000,
            memory_bytes=128 << 20,
            max_output_bytes=1 << 20,
            max_processes=16,
            tmpfs_bytes=8 << 20,
        ),
        ceiling_limits=Limits(**ceiling).merged_over(CEILING_LIMITS),
    )


def test_effective_limits_fill_zeros_from_the_tenant_defaults() -> None:
    tenant = make_tenant()
    assert tenant.effective_limits(Limits()) == tenant.default_limits
    assert tenant.effective_limits(Limits(wall_time_ms=2500)) == Limits(
        wall_time_ms=2500,
        cpu_time_ms=1000,
        memory_bytes=128 << 20,
        max_output_bytes=1 << 20,
        max_processes=16,
        tmpfs_bytes=8 << 20,
    )


def test_effective_limits_clamp_to_the_ceiling_never_reject() -> None:
    tenant = make_tenant(wall_time_ms=5000, memory_bytes=512 << 20)
    effective = tenant.effective_limits(
        Limits(wall_time_ms=10**9, memory_bytes=1 << 40, max_processes=10**6, cpu_time_ms=3000)
    )
    assert effective.wall_time_ms == 5000
    assert effective.memory_bytes == 512 << 20
    assert effective.max_processes == CEILING_LIMITS.max_processes
    assert effective.cpu_time_ms == 3000  # under the ceiling: untouched


def test_default_tenant() -> None:
    tenant = default_tenant()
    assert tenant.name == "default"
    assert tenant.key_sha256 == ""
    assert tenant.runtimes == frozenset(Runtime)
    assert tenant.default_limits == DEFAULT_LIMITS
    assert tenant.ceiling_limits == CEILING_LIMITS
    assert tenant.max_concurrent_executions == 16
    assert tenant.effective_limits(Limits(memory_bytes=1 << 50)).memory_bytes == (
        CEILING_LIMITS.memory_bytes
    )


# --------------------------------------------------------------------------- directory


def test_directory_authenticates_by_key(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    key_a = add_tenant(path, "acme")
    key_b = add_tenant(path, "beta", runtimes=[Runtime.JAVASCRIPT])
    directory = TenantDirectory(load_tenants(path))
    assert len(directory) == 2
    assert directory.names() == ["acme", "beta"]
    assert directory.requires_key
    tenant_a = directory.authenticate(key_a)
    tenant_b = directory.authenticate(key_b)
    assert tenant_a is not None and tenant_a.name == "acme"
    assert tenant_b is not None and tenant_b.name == "beta"
    assert tenant_b.runtimes == frozenset({Runtime.JAVASCRIPT})
    assert directory.authenticate(new_key()) is None
    assert directory.authenticate(key_a + "x") is None
    assert directory.authenticate("") is None
    assert directory.authenticate(hash_key(key_a)) is None  # the hash is not a key


def test_keyless_directory_admits_everyone() -> None:
    directory = TenantDirectory({"default": default_tenant()})
    assert not directory.requires_key
    assert directory.authenticate("") == default_tenant()
    assert directory.authenticate("anything") == default_tenant()


def test_directory_refuses_inconsistent_tenants() -> None:
    keyed = make_tenant()
    with pytest.raises(ValueError, match="keyless tenant must be the only one"):
        TenantDirectory({"default": default_tenant(), "acme": keyed})
    with pytest.raises(ValueError, match="filed under the name"):
        TenantDirectory({"other": keyed})
    twin = Tenant(
        name="twin",
        key_sha256=keyed.key_sha256,
        runtimes=keyed.runtimes,
        default_limits=keyed.default_limits,
        ceiling_limits=keyed.ceiling_limits,
    )
    with pytest.raises(ValueError, match="have the same key"):
        TenantDirectory({"acme": keyed, "twin": twin})


# --------------------------------------------------------------------------- editing


def test_add_creates_the_file_0600_with_the_hash_never_the_key(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    key = add_tenant(
        path,
        "acme",
        runtimes=["python"],
        max_concurrent_executions=3,
        default_limits={"wall_time_ms": 5000},
        ceiling_limits={"memory_bytes": 1 << 30},
    )
    text = path.read_text()
    assert key not in text
    assert key.removeprefix("sbx_") not in text
    assert hash_key(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert text.startswith("# sandboxd tenants file")
    assert "network_allowed" in text  # the header comment explains the fields
    acme = load_tenants(path)["acme"]
    assert acme.key_sha256 == hash_key(key)
    assert acme.runtimes == frozenset({Runtime.PYTHON})
    assert acme.max_concurrent_executions == 3
    assert acme.default_limits.wall_time_ms == 5000
    assert acme.ceiling_limits.memory_bytes == 1 << 30
    assert [p.name for p in tmp_path.iterdir()] == ["tenants.toml"]  # no temp file left


def test_add_writes_defaults_explicitly(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    add_tenant(path, "acme")
    entry = tomllib.loads(path.read_text())["tenants"]["acme"]
    assert entry["runtimes"] == ["python", "javascript"]
    assert entry["max_concurrent_executions"] == 8


def test_add_keeps_an_existing_file_and_its_comments(tmp_path: Path) -> None:
    path = write(tmp_path, "# our tenants, see ticket 42\n\n# the first customer\n" + A)
    path.chmod(0o644)
    add_tenant(path, "beta")
    text = path.read_text()
    assert text.startswith("# our tenants, see ticket 42\n\n# the first customer\n" + A)
    assert sorted(load_tenants(path)) == ["acme", "beta"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_add_refuses_an_existing_name(tmp_path: Path) -> None:
    path = write(tmp_path, A)
    with pytest.raises(TenantsFileError, match=r"tenant 'acme': already exists"):
        add_tenant(path, "acme")
    assert path.read_text() == A


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad Name"}, r"invalid tenant name 'Bad Name'"),
        ({"name": "a.b"}, r"invalid tenant name 'a\.b'"),
        ({"runtimes": ["ruby"]}, r"tenant 'beta': runtimes: unknown runtime 'ruby'"),
        ({"runtimes": []}, r"runtimes must be a non-empty list"),
        ({"max_concurrent_executions": 0}, r"max_concurrent_executions must be an integer >= 1"),
        ({"default_limits": {"bogus": 1}}, r"default_limits: unknown limit 'bogus'"),
        ({"ceiling_limits": {"wall_time_ms": 10**9}}, r"is above this build's ceiling"),
        (
            {"default_limits": {"wall_time_ms": 9000}, "ceiling_limits": {"wall_time_ms": 100}},
            r"default_limits\.wall_time_ms = 9000 is above the tenant's ceiling_limits",
        ),
    ],
)
def test_add_validation_failure_leaves_the_old_file_intact(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    path = write(tmp_path, "# keep me\n" + A)
    path.chmod(0o640)
    before = path.stat()
    name = kwargs.pop("name", "beta")
    with pytest.raises(TenantsFileError, match=message):
        add_tenant(path, str(name), **kwargs)  # type: ignore[arg-type]
    assert path.read_text() == "# keep me\n" + A
    after = path.stat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["tenants.toml"]


def test_add_refuses_to_edit_an_invalid_file(tmp_path: Path) -> None:
    bad = A + "network_allowed = true\n"
    path = write(tmp_path, bad)
    with pytest.raises(TenantsFileError, match="network_allowed = true is not supported"):
        add_tenant(path, "beta")
    assert path.read_text() == bad


def test_add_to_an_inline_tenants_table_rewrites_the_file(tmp_path: Path) -> None:
    # Appending a [tenants.beta] table after `tenants = {...}` is not valid TOML, so the
    # file is re-serialized instead.
    path = write(tmp_path, f'tenants = {{ acme = {{ key_sha256 = "{HASH}" }} }}\n')
    add_tenant(path, "beta")
    assert sorted(load_tenants(path)) == ["acme", "beta"]
    assert load_tenants(path)["acme"].key_sha256 == HASH


def test_remove(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    key_a = add_tenant(path, "acme", default_limits={"wall_time_ms": 5000})
    key_b = add_tenant(path, "beta", ceiling_limits={"memory_bytes": 1 << 30})
    remove_tenant(path, "acme")
    directory = TenantDirectory(load_tenants(path))
    assert directory.names() == ["beta"]
    assert directory.authenticate(key_a) is None
    assert directory.authenticate(key_b) is not None
    assert "[tenants.acme" not in path.read_text()
    assert path.read_text().startswith("# sandboxd tenants file")
    remove_tenant(path, "beta")
    assert load_tenants(path) == {}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_remove_keeps_other_tenants_comments(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# header\n\n"
        "# acme: trial\n" + A + "[tenants.acme.default_limits]\nwall_time_ms = 5\n\n"
        f'# beta: paying\n[tenants.beta]\nkey_sha256 = "{OTHER_HASH}"\n',
    )
    remove_tenant(path, "acme")
    assert path.read_text() == (
        f'# header\n\n# beta: paying\n[tenants.beta]\nkey_sha256 = "{OTHER_HASH}"\n'
    )


def test_remove_from_dotted_keys_falls_back_to_rewriting(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'tenants.acme.key_sha256 = "{HASH}"\ntenants.beta.key_sha256 = "{OTHER_HASH}"\n',
    )
    remove_tenant(path, "acme")
    assert sorted(load_tenants(path)) == ["beta"]


def test_remove_unknown_tenant(tmp_path: Path) -> None:
    path = write(tmp_path, A)
    with pytest.raises(TenantsFileError, match=r"no tenant 'zed' \(tenants: 'acme'\)"):
        remove_tenant(path, "zed")
    assert path.read_text() == A
    with pytest.raises(TenantsFileError, match="no such file"):
        remove_tenant(tmp_path / "missing.toml", "acme")


def test_edit_through_a_symlink_keeps_the_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    link = tmp_path / "tenants.toml"
    link.symlink_to(real)
    key = add_tenant(link, "acme")
    assert link.is_symlink()
    assert load_tenants(real)["acme"].key_sha256 == hash_key(key)


def test_serializer_round_trips_awkward_strings() -> None:
    for value in ["plain", 'qu"ote', "back\\slash", "tab\tnew\nline\x7f", "ünï"]:
        text = f"v = {edit._toml_string(value)}\n"
        assert tomllib.loads(text)["v"] == value


def test_write_failure_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, A)

    def fail(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        add_tenant(path, "beta")
    assert path.read_text() == A
    assert [p.name for p in tmp_path.iterdir()] == ["tenants.toml"]
