"""The daemon's layers, as docs/architecture.md draws them: gRPC and protobuf only at the API
edge, Redis only in the cluster code. Read from the source (every import statement, also the
ones inside functions), so a lazy import cannot slip past."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Top-level modules that carry the wire: grpc, protobuf and the generated stubs.
WIRE = (
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "grpc_status",
    "google.protobuf",
    "google.rpc",
    "sandboxd_client.proto",
)
# Where the daemon may import them: the API edge, the server that wires it, the health command.
WIRE_ALLOWED = ("api/", "server.py", "cli/health.py")
REDIS = ("redis",)
REDIS_ALLOWED = ("cluster/",)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module a file of `package` with this source imports, as absolute names (relative
    imports resolved; `from a import b` counts as `a` and `a.b`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def offenders(
    daemon: pathlib.Path, roots: tuple[str, ...], allowed: tuple[str, ...]
) -> dict[str, list[str]]:
    """{file under `daemon`: the modules under `roots` it imports} for files not in `allowed`."""
    found: dict[str, list[str]] = {}
    for path in sorted(daemon.rglob("*.py")):
        where = path.relative_to(daemon).as_posix()
        if where.startswith(allowed):
            continue
        package = ".".join(("sandboxd", *path.relative_to(daemon).parts[:-1]))
        names = imported_modules(path.read_text(), package)
        bad = sorted(n for n in names if any(n == r or n.startswith(r + ".") for r in roots))
        if bad:
            found[where] = bad
    return found


def test_grpc_and_protobuf_only_at_the_api_edge() -> None:
    assert offenders(ROOT / "sandboxd", WIRE, WIRE_ALLOWED) == {}


def test_redis_only_in_the_cluster_package() -> None:
    assert offenders(ROOT / "sandboxd", REDIS, REDIS_ALLOWED) == {}


def test_the_check_finds_top_level_lazy_and_relative_imports(tmp_path: pathlib.Path) -> None:
    """The check itself, on a small tree that breaks both rules every way it can."""
    (tmp_path / "api").mkdir()
    (tmp_path / "quotas").mkdir()
    (tmp_path / "api" / "ok.py").write_text("import grpc\nfrom google.rpc import status_pb2\n")
    (tmp_path / "quotas" / "top.py").write_text("import grpc\n")
    (tmp_path / "quotas" / "lazy.py").write_text("def f():\n    import redis.asyncio\n")
    (tmp_path / "quotas" / "stubs.py").write_text("from sandboxd_client.proto import sandbox_pb2\n")
    (tmp_path / "quotas" / "relative.py").write_text("from ..cluster import link\n")
    assert offenders(tmp_path, WIRE, WIRE_ALLOWED) == {
        "quotas/stubs.py": ["sandboxd_client.proto", "sandboxd_client.proto.sandbox_pb2"],
        "quotas/top.py": ["grpc"],
    }
    assert offenders(tmp_path, REDIS, REDIS_ALLOWED) == {"quotas/lazy.py": ["redis.asyncio"]}
    assert offenders(tmp_path, ("sandboxd.cluster",), ()) == {
        "quotas/relative.py": ["sandboxd.cluster", "sandboxd.cluster.link"]
    }
