"""The committed stubs in client/sandboxd_client/proto are exactly what proto/ generates."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STUBS = pathlib.Path("client", "sandboxd_client", "proto")


def check(root: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """`scripts/gen_proto.py --check` of the checkout at `root`."""
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_committed_stubs_match_the_proto() -> None:
    done = check(ROOT)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def checkout(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of what the check reads (the script, proto/, the committed stubs), laid out as in
    the repository, so that the very same command runs on stubs that may differ."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copytree(ROOT / STUBS, tmp_path / STUBS)
    done = check(tmp_path)
    assert done.returncode == 0, done.stderr  # the copy itself passes: only the edit differs
    return tmp_path


@pytest.mark.parametrize("name", ["sandbox_pb2.py", "sandbox_pb2.pyi", "sandbox_pb2_grpc.py"])
def test_check_fails_on_an_edited_stub(checkout: pathlib.Path, name: str) -> None:
    stub = checkout / STUBS / name
    text = stub.read_text()
    stub.write_text(text.replace("ExecuteRequest", "ExecuteRequests", 1))
    assert stub.read_text() != text
    done = check(checkout)
    assert done.returncode == 1, done
    assert done.stderr == f"stale stubs (run scripts/gen_proto.py): {name}\n"


def test_check_fails_on_a_missing_stub(checkout: pathlib.Path) -> None:
    (checkout / STUBS / "sandbox_pb2_grpc.py").unlink()
    done = check(checkout)
    assert done.returncode == 1, done
    assert done.stderr == "stale stubs (run scripts/gen_proto.py): sandbox_pb2_grpc.py\n"


def test_check_fails_when_the_proto_changed(checkout: pathlib.Path) -> None:
    proto = checkout / "proto" / "sandboxd" / "v1" / "sandbox.proto"
    proto.write_text(
        proto.read_text().replace("string blocked_syscall = 10;", "string blocked = 10;")
    )
    done = check(checkout)
    assert done.returncode == 1, done
    assert done.stderr == (
        "stale stubs (run scripts/gen_proto.py): sandbox_pb2.py, sandbox_pb2.pyi\n"
    )
