"""Starting the real daemon: bad settings are refused before anything starts (exit 2, one
message per problem), zero-config warns, and it serves on a unix socket and over TLS."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence

import pytest

from sandboxd_client import NO_RETRY, Client, Tls, Unavailable, Verdict

from .daemon import Daemon, spawn, start

EXIT_TIMEOUT_S = 30.0


def refused(args: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[int, list[str]]:
    """Run `sandboxd serve ARGS` that must exit by itself; (status, its error lines)."""
    daemon = spawn(args, env)
    try:
        rc = daemon.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        daemon.stop()
        raise AssertionError(
            f"`sandboxd serve {' '.join(args)}` started instead of refusing"
        ) from None
    assert daemon._reader is not None
    daemon._reader.join(timeout=10)
    lines = [line.rstrip("\n") for line in daemon.raw_stderr]
    assert daemon.logs == [], "it logged (so started something) before refusing"
    return rc, [line for line in lines if line]


@pytest.fixture()
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-e2e-") as path:
        yield path


def stopped(daemon: Daemon) -> None:
    if daemon.proc.poll() is None:
        try:
            daemon.stop()
        except Exception:
            daemon.proc.kill()
            daemon.proc.wait()


# -- 5. startup validation ---------------------------------------------------------------------


def test_all_interfaces_without_tenants_is_refused() -> None:
    rc, lines = refused(["--listen", "0.0.0.0:0"])
    assert rc == 2
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("sandboxd serve: error: --listen: refusing to serve 0.0.0.0:0"), line
    assert "without a tenants file" in line
    assert "`sandboxd tenants add" in line


def test_a_non_integer_flag_is_named() -> None:
    rc, lines = refused(["--listen", "127.0.0.1:0", "--max-message-bytes", "abc"])
    assert rc == 2
    assert lines == ["sandboxd serve: error: --max-message-bytes: 'abc' is not an integer"]


def test_a_bad_environment_variable_is_named() -> None:
    rc, lines = refused(["--listen", "127.0.0.1:0"], {"SANDBOXD_WARM_WORKERS": "-1"})
    assert rc == 2
    assert lines == ["sandboxd serve: error: SANDBOXD_WARM_WORKERS: -1 is out of range [1, 256]"]


def test_a_flag_wins_over_its_environment_variable() -> None:
    rc, lines = refused(
        ["--listen", "127.0.0.1:0", "--warm-workers", "300"], {"SANDBOXD_WARM_WORKERS": "1"}
    )
    assert rc == 2
    assert lines == ["sandboxd serve: error: --warm-workers: 300 is out of range [1, 256]"]


def test_a_missing_tenants_file_is_named(tmp: str) -> None:
    missing = os.path.join(tmp, "missing.toml")
    rc, lines = refused(["--listen", "127.0.0.1:0", "--tenants", missing])
    assert rc == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"sandboxd serve: error: --tenants: {missing!r} does not exist")
    assert "sandboxd tenants add" in lines[0]


def test_every_bad_value_is_reported(tmp: str) -> None:
    missing = os.path.join(tmp, "missing.toml")
    rc, lines = refused(
        ["--listen", "127.0.0.1:0", "--max-message-bytes", "abc", "--drain-grace", "soon"],
        {"SANDBOXD_WARM_WORKERS": "-1", "SANDBOXD_TENANTS": missing},
    )
    assert rc == 2
    assert len(lines) == 4, lines
    assert all(line.startswith("sandboxd serve: error: ") for line in lines), lines
    text = "\n".join(lines)
    for name in ("--max-message-bytes", "--drain-grace", "SANDBOXD_WARM_WORKERS"):
        assert f"error: {name}: " in text, (name, lines)
    assert f"error: SANDBOXD_TENANTS: {missing!r} does not exist" in text


def test_a_bad_jail_mode_is_named() -> None:
    rc, lines = refused(["--listen", "127.0.0.1:0"], {"SANDBOXD_JAIL_MODE": "chroot"})
    assert rc == 2
    assert lines == [
        "sandboxd serve: error: SANDBOXD_JAIL_MODE: 'chroot' is not auto, root or subuid"
    ]


# Runs `sandboxd serve` in a private mount namespace where an empty file covers /etc/subuid and
# /etc/subgid: the test makes "root has no subordinate ids" true instead of hoping the host is
# so (tests/pool/test_subuid_mode.py adds lines to the real files while it runs).
NO_SUBIDS = 'set -e; mount --bind "$1" /etc/subuid; mount --bind "$1" /etc/subgid; shift; exec "$@"'


def test_subuid_mode_without_subordinate_ids_exits_2_naming_the_file(tmp: str) -> None:
    empty = os.path.join(tmp, "empty")
    open(empty, "w").close()
    argv = [sys.executable, "-m", "sandboxd", "serve", "--listen", "127.0.0.1:0",
            "--jail-mode", "subuid"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOXD_")}
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", NO_SUBIDS, "sh", empty,
         *argv],
        capture_output=True, text=True, timeout=EXIT_TIMEOUT_S, env=env, check=False,
    )  # fmt: skip
    errors = [
        line for line in done.stderr.splitlines() if line.startswith("sandboxd serve: error:")
    ]
    assert done.returncode == 2, done
    assert len(errors) == 1, done.stderr
    assert "jail_mode subuid: /etc/subuid has no line for user 'root' (uid 0)" in errors[0]
    assert "Traceback" not in done.stderr


def test_zero_config_warns_about_the_keyless_tenant(zero_daemon: Daemon) -> None:
    warnings = [
        entry
        for entry in zero_daemon.logs
        if entry.get("level") == "WARNING" and "keyless tenant 'default'" in entry.get("msg", "")
    ]
    assert len(warnings) == 1, zero_daemon.logs[:5]
    assert warnings[0]["tenant"] == "default"
    assert "sandboxd tenants add" in warnings[0]["msg"]
    listening = zero_daemon.wait_for_log("listening")
    assert listening["zero_config"] is True
    assert zero_daemon.log_messages().index(warnings[0]["msg"]) < (
        zero_daemon.log_messages().index("listening")
    )


# -- 6. unix socket ----------------------------------------------------------------------------


def test_unix_socket(tmp: str) -> None:
    path = os.path.join(tmp, "s.sock")
    daemon = start(["--listen", f"unix:{path}"])
    try:
        assert daemon.address == f"unix:{path}"
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        with Client(f"unix:{path}") as c:
            result = c.execute("python", "print(6 * 7)", timeout_s=30)
        assert result.verdict is Verdict.OK
        assert result.stdout == b"42\n"
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    finally:
        stopped(daemon)
    assert not os.path.lexists(path)


def test_a_stale_socket_is_replaced(tmp: str) -> None:
    import socket

    path = os.path.join(tmp, "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file remains, nobody listens: what a crashed daemon leaves
    daemon = start(["--listen", f"unix:{path}"])
    try:
        with Client(f"unix:{path}") as c:
            assert c.execute("python", "print('hi')", timeout_s=30).stdout == b"hi\n"
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    finally:
        stopped(daemon)
    assert not os.path.lexists(path)


# -- 7. TLS ------------------------------------------------------------------------------------


def self_signed(tmp: str) -> tuple[str, str]:
    cert = os.path.join(tmp, "cert.pem")
    key = os.path.join(tmp, "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-days", "1", "-keyout", key, "-out", cert,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls(tmp: str) -> None:
    cert, key = self_signed(tmp)
    with open(cert, "rb") as f:
        cert_pem = f.read()
    daemon = start(["--tls-cert", cert, "--tls-key", key])
    try:
        assert daemon.wait_for_log("listening")["tls"] is True
        tls = Tls(root_certificates=cert_pem, server_name_override="localhost")
        with Client(daemon.address, tls=tls) as c:
            result = c.execute("python", "print('over tls')", timeout_s=30)
        assert result.verdict is Verdict.OK
        assert result.stdout == b"over tls\n"

        with Client(daemon.address, retry=NO_RETRY) as plain, pytest.raises(Unavailable):
            plain.execute("python", "print('in clear')", timeout_s=10)
        # and a TLS client that does not trust the certificate
        with (
            Client(
                daemon.address, tls=Tls(server_name_override="localhost"), retry=NO_RETRY
            ) as untrusting,
            pytest.raises(Unavailable),
        ):
            untrusting.execute("python", "print('untrusted')", timeout_s=10)
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    finally:
        stopped(daemon)


def health_cli(target: str, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """`sandboxd health` as the container's HEALTHCHECK runs it: (exit status, output)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOXD_")}
    out = subprocess.run(
        [sys.executable, "-m", "sandboxd", "health", "--target", target, "--timeout", "10", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )
    return out.returncode, out.stdout + out.stderr


def test_health_command_over_tls(tmp: str) -> None:
    cert, key = self_signed(tmp)
    daemon = start(["--tls-cert", cert, "--tls-key", key])
    try:
        target = daemon.address  # 127.0.0.1:PORT; the certificate names localhost
        assert health_cli(target, "--tls-ca", cert, "--tls-server-name", "localhost") == (
            0,
            "SERVING\n",
        )
        # In the image the daemon's own variables are set: its certificate is the default CA.
        env = {"SANDBOXD_TLS_CERT": cert, "SANDBOXD_HEALTH_TLS_SERVER_NAME": "localhost"}
        assert health_cli(target, env=env) == (0, "SERVING\n")
        rc, out = health_cli(target)  # plaintext against TLS
        assert rc == 2 and "UNAVAILABLE" in out, out
        rc, out = health_cli(target, "--tls-ca", cert)  # 127.0.0.1 is not in the certificate
        assert rc == 2 and "UNAVAILABLE" in out, out
        rc, out = health_cli(target, "--tls-ca", os.path.join(tmp, "missing.pem"))
        assert rc == 2 and "missing.pem: No such file or directory" in out, out
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    finally:
        stopped(daemon)


def test_tls_cert_without_key_is_refused(tmp: str) -> None:
    cert, _key = self_signed(tmp)
    rc, lines = refused(["--listen", "127.0.0.1:0", "--tls-cert", cert])
    assert rc == 2
    assert lines == ["sandboxd serve: error: --tls-cert and --tls-key must be given together"]
