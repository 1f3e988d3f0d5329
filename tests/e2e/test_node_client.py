"""A Node.js client built from proto/sandboxd/v1/sandbox.proto alone talks to a real daemon.

Proves the wire contract is enough for another language: tests/e2e/node_client/execute.js uses
only @grpc/grpc-js and @grpc/proto-loader (versions pinned by its package-lock.json) and the
.proto file. Its npm dependencies are installed here with `npm ci` if they are missing (`make
install-dev` installs them too); npm failing is a test failure, never a skip.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import TenantDaemon
from .daemon import Daemon

NODE_CLIENT_DIR = Path(__file__).resolve().parent / "node_client"
EXECUTE_JS = NODE_CLIENT_DIR / "execute.js"
PROTO_PATH = Path(__file__).resolve().parents[2] / "proto" / "sandboxd" / "v1" / "sandbox.proto"

UNAUTHENTICATED = 16


@pytest.fixture(scope="module")
def node_client() -> Path:
    """execute.js with its node_modules installed (`npm ci` from the committed lock file)."""
    if not (NODE_CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        proc = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_CLIENT_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, (
            f"npm ci failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return EXECUTE_JS


def run_node(
    script: Path,
    address: str,
    request: dict[str, Any],
    api_key: str | None = None,
) -> dict[str, Any]:
    """Run execute.js once; its single JSON result line."""
    proc = subprocess.run(
        ["node", str(script), address, api_key or "", str(PROTO_PATH)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("GRPC_", "NODE_"))},
    )
    assert proc.returncode == 0, f"execute.js exited {proc.returncode}:\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def python_echo_request() -> dict[str, Any]:
    return {
        "runtime": "RUNTIME_PYTHON",
        "code": "import sys\ndata = sys.stdin.read()\nprint('got ' + data.upper(), end='')\n",
        "stdin_b64": b64(b"hello from node"),
    }


def test_python_program_with_stdin(node_client: Path, zero_daemon: Daemon) -> None:
    result = run_node(node_client, zero_daemon.address, python_echo_request())
    assert result["ok"] is True, result
    assert result["verdict"] == "VERDICT_OK"
    assert result["exit_code"] == 0
    assert base64.b64decode(result["stdout_b64"]) == b"got HELLO FROM NODE"
    assert base64.b64decode(result["stderr_b64"]) == b""
    assert result["execution_id"]


def test_javascript_program(node_client: Path, zero_daemon: Daemon) -> None:
    request = {
        "runtime": "RUNTIME_JAVASCRIPT",
        "code": "process.stdout.write(String(6 * 7) + '\\n'); console.error('to stderr');",
        "stdin_b64": "",
    }
    result = run_node(node_client, zero_daemon.address, request)
    assert result["ok"] is True, result
    assert result["verdict"] == "VERDICT_OK"
    assert result["exit_code"] == 0
    assert base64.b64decode(result["stdout_b64"]) == b"42\n"
    assert base64.b64decode(result["stderr_b64"]) == b"to stderr\n"
    assert result["execution_id"]


def test_runtime_error_is_a_verdict_not_a_grpc_error(
    node_client: Path, zero_daemon: Daemon
) -> None:
    request = {
        "runtime": "RUNTIME_PYTHON",
        "code": "import sys\nsys.exit(3)\n",
        "stdin_b64": "",
    }
    result = run_node(node_client, zero_daemon.address, request)
    assert result["ok"] is True, result
    assert result["verdict"] == "VERDICT_RUNTIME_ERROR"
    assert result["exit_code"] == 3


def test_tenants_daemon_without_key_is_unauthenticated(
    node_client: Path, tenant_daemon: TenantDaemon
) -> None:
    result = run_node(node_client, tenant_daemon.daemon.address, python_echo_request())
    assert result["ok"] is False, result
    assert result["code"] == UNAUTHENTICATED


def test_tenants_daemon_with_beta_key(node_client: Path, tenant_daemon: TenantDaemon) -> None:
    result = run_node(
        node_client,
        tenant_daemon.daemon.address,
        python_echo_request(),
        api_key=tenant_daemon.keys["beta"],
    )
    assert result["ok"] is True, result
    assert result["verdict"] == "VERDICT_OK"
    assert base64.b64decode(result["stdout_b64"]) == b"got HELLO FROM NODE"
