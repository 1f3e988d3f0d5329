"""`sandboxd tenants add|list|remove`, through the command line's own parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandboxd.cli import tenants as tenants_cli
from sandboxd.cli.main import main
from sandboxd.tenants import TenantDirectory, TenantsFileError, hash_key, load_tenants
from sandboxd_pool.types import Runtime


def run(*argv: str) -> int:
    return main(list(argv))


@pytest.fixture
def file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(tenants_cli.ENV_FILE, raising=False)
    return tmp_path / "tenants.toml"


def add(file: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert run("tenants", "add", *argv, "--file", str(file)) == 0
    out = capsys.readouterr().out
    return out.splitlines()[-1]


def test_add_prints_the_key_alone_on_the_last_line(
    file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("tenants", "add", "acme", "--file", str(file)) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    assert "added tenant 'acme'" in lines[0] and str(file) in lines[0]
    assert "shown once" in lines[0]
    key = lines[-1]
    assert key.startswith("sbx_") and key == key.strip() and " " not in key
    assert err == ""
    text = file.read_text()
    assert key not in text and hash_key(key) in text
    tenant = TenantDirectory(load_tenants(file)).authenticate(key)
    assert tenant is not None and tenant.name == "acme"
    wrong = key[:-1] + ("B" if key.endswith("A") else "A")
    assert TenantDirectory(load_tenants(file)).authenticate(wrong) is None


def test_add_with_every_option(file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = add(
        file,
        capsys,
        "acme",
        "--runtimes",
        "python, javascript",
        "--max-concurrent",
        "3",
        "--default",
        "wall_time_ms=5000",
        "--default",
        "memory_bytes=134217728",
        "--ceiling",
        "wall_time_ms=20000",
        "--max-executions-per-second",
        "0.5",
        "--max-cpu-seconds-per-minute",
        "120",
    )
    acme = load_tenants(file)["acme"]
    assert acme.key_sha256 == hash_key(key)
    assert acme.runtimes == frozenset(Runtime)
    assert acme.max_concurrent_executions == 3
    assert acme.default_limits.wall_time_ms == 5000
    assert acme.default_limits.memory_bytes == 128 << 20
    assert acme.ceiling_limits.wall_time_ms == 20000
    assert acme.max_executions_per_second == 0.5
    assert acme.max_cpu_seconds_per_minute == 120.0
    assert run("tenants", "list", "--file", str(file)) == 0
    listed = capsys.readouterr().out
    assert "max_executions_per_second=0.5  max_cpu_seconds_per_minute=120  key_sha256=" in listed


# Each flag of `tenants add` and the file line it stands for: a value the file's parser refuses
# is refused by the flag with the parser's own reason (sandboxd.tenants.file is the one source of rules).
FLAG_LINES = [
    (["--max-concurrent", "{v}"], "max_concurrent_executions = {v}", ["0", "-3", "2.5", "'4'"]),
    (
        ["--max-executions-per-second", "{v}"],
        "max_executions_per_second = {v}",
        ["0", "-1", "nan", "inf", "2e6", "true", "'fast'"],
    ),
    (
        ["--max-cpu-seconds-per-minute", "{v}"],
        "max_cpu_seconds_per_minute = {v}",
        ["0", "-0.5", "1e7", "false"],
    ),
    (
        ["--default", "wall_time_ms={v}"],
        "[tenants.new.default_limits]\nwall_time_ms = {v}",
        ["0", "1.5", "9999999999"],
    ),
    (
        ["--ceiling", "memory_bytes={v}"],
        "[tenants.new.ceiling_limits]\nmemory_bytes = {v}",
        ["1024", "'big'", str(1 << 40)],
    ),
    (["--runtimes", "{v}"], "runtimes = {v}", ["ruby", "python,python"]),
]


@pytest.mark.parametrize(
    ("argv", "line", "value"),
    [(argv, line, value) for argv, line, values in FLAG_LINES for value in values],
)
def test_a_flag_refuses_what_the_file_refuses_with_its_reason(
    file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str, value: str
) -> None:
    toml_value = (
        "[" + ", ".join(f'"{r}"' for r in value.split(",")) + "]"
        if argv[0] == "--runtimes"
        else value
    )
    text = f'[tenants.new]\nkey_sha256 = "{"ab" * 32}"\n' + line.format(v=toml_value) + "\n"
    file.write_text(text)
    with pytest.raises(TenantsFileError) as info:
        load_tenants(file)
    file.unlink()
    flags = [a.format(v=value) for a in argv]
    assert run("tenants", "add", "new", *flags, "--file", str(file)) == 2
    err = capsys.readouterr().err
    assert err == f"sandboxd: error: {flags[0]} {flags[1]!r}: {info.value.reason}\n"
    assert not file.exists()


def test_file_from_the_environment(
    file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tenants_cli.ENV_FILE, str(file))
    assert run("tenants", "add", "acme", "--runtimes", "python") == 0
    capsys.readouterr()
    assert run("tenants", "list") == 0
    assert capsys.readouterr().out.startswith("acme ")
    assert run("tenants", "remove", "acme") == 0
    assert load_tenants(file) == {}


def test_no_file_is_a_usage_error(file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("tenants", "list") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "sandboxd: error: no tenants file: pass --file F or set SANDBOXD_TENANTS\n"


def test_list_never_shows_keys(file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_a = add(file, capsys, "acme", "--max-concurrent", "3")
    key_b = add(file, capsys, "beta-2", "--runtimes", "javascript")
    assert run("tenants", "list", "--file", str(file)) == 0
    out = capsys.readouterr().out
    assert key_a not in out and key_b not in out
    assert hash_key(key_a) not in out  # a prefix only
    lines = out.splitlines()
    assert len(lines) == 2
    acme, beta = lines
    assert acme.split()[0] == "acme"
    assert "runtimes=javascript,python" in acme and "max_concurrent=3" in acme
    assert f"key_sha256={hash_key(key_a)[:12]}..." in acme
    assert beta.split()[0] == "beta-2"
    assert "runtimes=javascript " in beta and "max_concurrent=8" in beta


def test_list_empty_file(file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file.write_text("")
    assert run("tenants", "list", "--file", str(file)) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no tenants" in err


def test_remove(file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = add(file, capsys, "acme")
    add(file, capsys, "beta")
    assert run("tenants", "remove", "acme", "--file", str(file)) == 0
    assert "removed tenant 'acme'" in capsys.readouterr().out
    assert sorted(load_tenants(file)) == ["beta"]
    assert TenantDirectory(load_tenants(file)).authenticate(key) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "acme"], "tenant 'acme': already exists"),
        (["add", "Bad"], "invalid tenant name 'Bad'"),
        (
            ["add", "new", "--runtimes", "python,ruby"],
            "--runtimes 'python,ruby': runtimes: unknown runtime 'ruby'",
        ),
        (["add", "new", "--runtimes", ""], "--runtimes '': runtimes must be a non-empty list"),
        (["add", "new", "--default", "wall_time_ms"], "expected FIELD=VALUE"),
        (["add", "new", "--default", "=5"], "expected FIELD=VALUE"),
        (["add", "new", "--default", "wall=5"], "unknown limit 'wall'"),
        (
            ["add", "new", "--ceiling", "wall_time_ms=5s"],
            "--ceiling 'wall_time_ms=5s': ceiling_limits.wall_time_ms must be an integer >= 1, "
            "got '5s'",
        ),
        (
            ["add", "new", "--ceiling", "wall_time_ms=5", "--ceiling", "wall_time_ms=6"],
            "wall_time_ms is given twice",
        ),
        (["add", "new", "--default", "memory_bytes=1"], "memory_bytes must be an integer >="),
        (["add", "new", "--max-concurrent", "0"], "max_concurrent_executions must be an integer"),
        (
            ["add", "new", "--default", "wall_time_ms=9000", "--ceiling", "wall_time_ms=100"],
            "default_limits.wall_time_ms = 9000 is above the tenant's ceiling_limits",
        ),
        (
            ["add", "new", "--ceiling", "max_processes=100000"],
            "ceiling_limits.max_processes = 100000 is above this build's ceiling",
        ),
        (["remove", "nobody"], "no tenant 'nobody'"),
    ],
)
def test_errors_exit_2_on_stderr_and_leave_the_file(
    file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    add(file, capsys, "acme")
    before = file.read_text()
    assert run("tenants", *argv, "--file", str(file)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("sandboxd: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert file.read_text() == before


def test_invalid_file_is_reported_by_every_command(
    file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file.write_text('[tenants.acme]\nkey_sha256 = "' + "ab" * 32 + '"\nnetwork_allowed = true\n')
    for argv in (["list"], ["add", "beta"], ["remove", "acme"]):
        assert run("tenants", *argv, "--file", str(file)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sandboxd: error: {file}: tenant 'acme': network_allowed = true")


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["tenants"], ["tenants", "add"], ["tenants", "list"], ["tenants", "remove"]):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: sandboxd tenants")
    with pytest.raises(SystemExit):
        main(["tenants", "add", "--help"])
    help_text = capsys.readouterr().out
    for option in (
        "--file",
        "--runtimes",
        "--max-concurrent",
        "--max-executions-per-second",
        "--max-cpu-seconds-per-minute",
        "--default",
        "--ceiling",
    ):
        assert option in help_text
    assert "SANDBOXD_TENANTS" in help_text


def test_tenants_requires_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["tenants"])
    assert info.value.code == 2
