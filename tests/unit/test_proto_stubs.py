"""The committed stubs in client/sandboxd_client/_proto are exactly what proto/ generates."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_committed_stubs_match_the_proto() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_check_fails_on_a_difference(tmp_path: pathlib.Path, monkeypatch: object) -> None:
    """The check is not vacuous: a stub that differs from the generated one is reported."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_proto
    finally:
        sys.path.pop(0)
    stubs = gen_proto.generate()
    assert set(stubs) == {"sandbox_pb2.py", "sandbox_pb2.pyi", "sandbox_pb2_grpc.py"}
    committed = (gen_proto.OUT_DIR / "sandbox_pb2.py").read_text()
    assert stubs["sandbox_pb2.py"] == committed
    assert "from . import sandbox_pb2" in stubs["sandbox_pb2_grpc.py"]
    assert stubs["sandbox_pb2.py"] != committed.replace("sandboxd.v1", "sandboxd.v2")
