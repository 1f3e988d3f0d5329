"""`sandboxd serve` settings: flags, environment variables, one message per bad value."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sandboxd.server import pool_config
from sandboxd.settings import Settings, SettingsError, add_arguments, from_args


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv), env or {})


def test_defaults() -> None:
    s = parse([])
    assert s.listen == "127.0.0.1:50051"
    assert s.max_message_bytes == 64 * 1024 * 1024
    assert s.tenants_file is None and s.metrics_port is None
    assert s.listens_on_loopback_only


def test_env_and_flag_precedence() -> None:
    s = parse(["--warm-workers", "3"], {"SANDBOXD_WARM_WORKERS": "7", "SANDBOXD_METRICS_PORT": "0"})
    assert s.warm_workers_per_runtime == 3
    assert s.metrics_port == 0


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--max-message-bytes", "abc"], {}, "--max-message-bytes: 'abc' is not an integer"),
        ([], {"SANDBOXD_WARM_WORKERS": "-1"}, "SANDBOXD_WARM_WORKERS: -1 is out of range"),
        (["--warm-workers", "0"], {}, "--warm-workers: 0 is out of range [1, 256]"),
        (
            ["--runtimes", "python,Python"],
            {},
            "--runtimes: 'python,Python': name each runtime once",
        ),
        (
            ["--warm-workers", "256", "--max-concurrent", "3585"],
            {},
            "--warm-workers x 2 runtimes + --max-concurrent = 4097 workers at once, more than "
            "the 4096 worker slots",
        ),
        (
            ["--redis-url", "redis://127.0.0.1:notaport/0"],
            {},
            "--redis-url: 'redis://127.0.0.1:notaport/0' is not a Redis URL (Port could not be "
            "cast to integer value as 'notaport'",
        ),
        (
            [],
            {"SANDBOXD_REDIS_URL": "redis://:secret@h:6379/0?socket_timeout=soon"},
            "SANDBOXD_REDIS_URL: 'redis://***@h:6379/0?socket_timeout=soon' is not a Redis URL "
            "(Invalid value for 'socket_timeout'",
        ),
        (["--redis-url", "http://h:6379"], {}, "is not a Redis URL (unknown scheme"),
        (["--python", "/etc/passwd"], {}, "--python: '/etc/passwd' is not an executable file"),
        (["--node", "/nonexistent/node"], {}, "--node: '/nonexistent/node' is not an executable"),
        (["--node", "/usr"], {}, "--node: '/usr' is not an executable file"),
        (
            ["--metrics-host", "no-such-host.invalid"],
            {},
            "--metrics-host: 'no-such-host.invalid': not an IP address, and it does not resolve",
        ),
        (
            ["--listen", "no-such-host.invalid:0"],
            {},
            "--listen: 'no-such-host.invalid:0': not an IP address, and it does not resolve",
        ),
        (["--listen", "nohost"], {}, "is not HOST:PORT"),
        (
            ["--listen", "0.0.0.0:50051"],
            {},
            "refusing to serve 0.0.0.0:50051 without a tenants file",
        ),
        (["--tenants", "/nonexistent/t.toml"], {}, "sandboxd tenants add"),
        (["--tls-cert", "/x"], {}, "--tls-cert and --tls-key must be given together"),
        (["--runtimes", "python,ruby"], {}, "each runtime must be 'python' or 'javascript'"),
        (["--drain-grace", "-1"], {}, "out of range"),
        (["--node", "node"], {}, "must be an absolute path"),
        (["--log-level", "loud"], {}, "is not DEBUG, INFO, WARNING or ERROR"),
        (["--result-retention-s", "0.5"], {}, "0.5 is out of range [1, 604800] seconds"),
        ([], {"SANDBOXD_RESULT_RETENTION_S": "soon"}, "'soon' is not a number of seconds"),
        (["--result-retention-s", "nan"], {}, "out of range"),
        (["--max-queued-jobs", "0"], {}, "--max-queued-jobs: 0 is out of range"),
        (["--async-max-bytes", "1024"], {}, "--async-max-bytes: 1024 is out of range"),
    ],
)
def test_bad_values(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse(argv, env)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_a_tls_pair_that_does_not_load_is_refused(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    with pytest.raises(SettingsError) as info:
        parse(["--tls-cert", str(cert)], {"SANDBOXD_TLS_KEY": str(key)})
    (problem,) = info.value.problems
    assert problem.startswith(
        "--tls-cert, SANDBOXD_TLS_KEY: cannot load the certificate and its key: "
    ), problem


def test_the_secret_of_a_redis_url_never_shows() -> None:
    with pytest.raises(SettingsError) as info:
        parse(["--redis-url", "redis://:hunter2@h:x/0"])
    assert "hunter2" not in str(info.value)


def test_name_of_says_where_a_value_came_from() -> None:
    s = parse(["--metrics-port", "0"], {"SANDBOXD_LISTEN": "127.0.0.1:0"})
    assert s.name_of("listen") == "SANDBOXD_LISTEN"
    assert s.name_of("metrics_port") == "--metrics-port"
    assert s.name_of("warm_workers_per_runtime") == "--warm-workers"  # not set: the flag


CANDIDATES = {
    "--warm-workers": ["-1", "0", "1", "256", "257"],
    "--max-concurrent": ["0", "1", "3584", "3585", "4094", "4096", "4097"],
    "--runtimes": ["python", "javascript", "python,javascript"],
    "--max-message-bytes": ["4095", "4096", str(1024 * 1024 * 1024)],
    "--jail-mode": ["auto", "root", "subuid"],
    "--cgroup-parent": ["a" * 64, "x.y-z_1"],
}


@pytest.mark.parametrize("flag", sorted(CANDIDATES))
def test_what_the_settings_accept_the_engine_accepts(flag: str) -> None:
    """Every value (alone and with the others' extremes) the settings accept builds the
    engine's PoolConfig: `--warm-workers 0` used to pass here, then die in PoolConfig."""
    others = [["--warm-workers", "256"], ["--max-concurrent", "4096"], ["--runtimes", "python"]]
    for value in CANDIDATES[flag]:
        for extra in [[], *others]:
            try:
                settings = parse([flag, value, *extra])
            except SettingsError:
                continue
            config = pool_config(settings)
            assert config.worker_slots_needed <= 4096, (flag, value, extra)


def test_every_problem_is_reported() -> None:
    with pytest.raises(SettingsError) as info:
        parse(["--max-concurrent", "0", "--metrics-port", "70000"])
    assert len(info.value.problems) == 2


def test_loopback_detection(tmp_path: Path) -> None:
    assert parse(["--listen", "[::1]:0"]).listens_on_loopback_only
    assert parse(["--listen", "localhost:0"]).listens_on_loopback_only
    assert parse(["--listen", f"unix:{tmp_path}/s.sock"]).listens_on_loopback_only
    tenants = tmp_path / "t.toml"
    tenants.write_text("")
    s = parse(["--listen", "0.0.0.0:0", "--tenants", str(tenants)])
    assert not s.listens_on_loopback_only


def test_async_settings_defaults_and_environment() -> None:
    s = parse([])
    assert s.result_retention_s == 3600.0
    assert s.max_queued_jobs == 1000
    assert s.async_max_bytes == 1024 * 1024 * 1024
    s = parse(
        ["--max-queued-jobs", "5"],
        {
            "SANDBOXD_RESULT_RETENTION_S": "2.5",
            "SANDBOXD_MAX_QUEUED_JOBS": "7",
            "SANDBOXD_ASYNC_MAX_BYTES": str(32 * 1024 * 1024),
        },
    )
    assert s.result_retention_s == 2.5
    assert s.max_queued_jobs == 5
    assert s.async_max_bytes == 32 * 1024 * 1024


def test_egress_files_are_checked_at_startup(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 api.example.test\n")
    bundle = tmp_path / "ca.pem"
    import ssl

    bundle.write_text(ssl.DER_cert_to_PEM_cert(_any_ca_der()))
    s = parse(["--egress-hosts", str(hosts)], {"SANDBOXD_EGRESS_CA_BUNDLE": str(bundle)})
    config = pool_config(s)
    assert (config.egress_hosts_file, config.egress_ca_file) == (str(hosts), str(bundle))
    hosts.write_text("127.0.0.1 api.example.test\nnot-an-address name\n")
    bundle.write_text("not a certificate\n")
    with pytest.raises(SettingsError) as info:
        parse(["--egress-hosts", str(hosts), "--egress-ca-bundle", str(bundle)])
    assert info.value.problems == [
        f"--egress-hosts: {str(hosts)!r}: {hosts}, line 2: 'not-an-address' is not an address",
        f"--egress-ca-bundle: {str(bundle)!r}: not PEM CA certificates "
        "(NO_CERTIFICATE_OR_CRL_FOUND)",
    ]
    with pytest.raises(SettingsError) as info:
        parse([], {"SANDBOXD_EGRESS_HOSTS": str(tmp_path / "missing")})
    assert info.value.problems == [
        f"SANDBOXD_EGRESS_HOSTS: {str(tmp_path / 'missing')!r} does not exist"
    ]


def _any_ca_der() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from sandboxd_pool.egress.ca import CertificateAuthority

    pem = CertificateAuthority().cert_pem.encode()
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
