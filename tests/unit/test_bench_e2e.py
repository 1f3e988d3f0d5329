"""`python -m bench e2e`: its pure parts (payloads, targets, tables, RESULTS.md sections).

No servers and no timing assertions: the benchmark itself is run by hand (`python -m bench e2e`).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.common.output import markers, write_section
from bench.common.stats import LatencyRun, LatencyStats, ThroughputRun
from bench.e2e.report import (
    E2EReport,
    EchoResult,
    TargetResult,
    evaluate,
    render,
)
from bench.e2e.scenarios import json_document, json_payloads, scenarios


def _run(*ms: float) -> LatencyRun:
    return LatencyRun(stats=LatencyStats.from_ns([int(m * 1e6) for m in ms]))


def _load(threads: int, completed: int, p50_ms: float) -> ThroughputRun:
    return ThroughputRun(
        threads=threads,
        completed=completed,
        failures=0,
        elapsed_s=1.0,
        window_s=0.8,
        window_completed=int(completed * 0.8),
        latency=LatencyStats.from_ns([int(p50_ms * 1e6)]),
    )


def test_json_document_is_deterministic_and_just_under_the_target() -> None:
    doc = json_document(50_000)
    assert doc == json_document(50_000)
    size = len(json.dumps(doc))
    assert 49_000 < size <= 50_000


def test_json_payloads_match_what_each_runtime_prints_back() -> None:
    stdin, python_out, node_out = json_payloads(20_000)
    doc = json.loads(stdin)
    assert json.dumps(doc).encode() == python_out == stdin  # Python's json.dump defaults
    assert json.dumps(doc, separators=(",", ":")).encode() == node_out  # JSON.stringify
    assert node_out.isascii()


def test_scenarios_follow_the_runtimes_asked_for() -> None:
    keys = [s.key for s in scenarios(["python", "javascript"], json_bytes=10_000)]
    assert keys == ["python-hello", "node-hello", "python-json", "node-json"]
    assert [s.key for s in scenarios(["python"], json_bytes=10_000)] == [
        "python-hello",
        "python-json",
    ]


def _results(daemon_ms: float, bwrap_ms: float) -> dict[tuple[str, str], TargetResult]:
    return {
        ("python-hello", "daemon"): TargetResult(
            paced=_run(daemon_ms, daemon_ms, daemon_ms * 2), loads={1: _load(1, 100, 1.0)}
        ),
        ("python-hello", "bwrap"): TargetResult(
            paced=_run(bwrap_ms, bwrap_ms, bwrap_ms), loads={1: _load(1, 50, 20.0)}
        ),
        ("node-hello", "daemon"): TargetResult(paced=_run(3.0)),
    }


def test_targets_pass_and_miss() -> None:
    checks = {c.name: c for c in evaluate(_results(1.5, 18.0))}
    assert checks["Python hello Execute p50 over gRPC"].verdict == "PASS"
    assert checks["Python hello Execute p99 over gRPC"].verdict == "PASS"
    ratio = checks["Python hello p50 vs the same service with bwrap per request"]
    assert ratio.verdict == "PASS" and ratio.measured.startswith("12.0x")
    assert checks["Node hello Execute p50 over gRPC"].verdict == "PASS"

    checks = {c.name: c for c in evaluate(_results(5.0, 20.0))}
    assert checks["Python hello Execute p50 over gRPC"].verdict == "MISS"
    assert checks["Python hello p50 vs the same service with bwrap per request"].verdict == "MISS"


def test_targets_not_measured_are_na() -> None:
    assert {c.verdict for c in evaluate({})} == {"N/A"}


def _report() -> E2EReport:
    results = _results(2.0, 20.0)
    return E2EReport(
        command="python -m bench e2e",
        machine={"date": "2026-01-01 00:00 UTC", "nproc": "2"},
        scenarios=[("python-hello", "Python hello"), ("node-hello", "Node hello")],
        thread_counts=[1],
        iterations=10,
        duration_s=1.0,
        pause_ms={"python": 40.0},
        warm_workers=8,
        results=results,
        floor={"daemon": _run(0.5), "bwrap": _run(0.6)},
        floor_paced={"daemon": _run(1.5), "bwrap": _run(1.6)},
        floor_pause_ms=40.0,
        echo=[EchoResult(1_000_000, {"sync": _run(1.0), "aio": _run(2.0)})],
        checks=evaluate(results),
        notes=["a note"],
    )


def test_render_has_ratios_floor_echo_and_targets() -> None:
    text = render(_report())
    assert text.startswith("## End to end over gRPC: `python -m bench e2e`")
    assert "| x1 paced | 2.00" in text
    assert "10.0x" in text  # bwrap p50 / daemon p50
    assert "back to back daemon p50 0.50 ms" in text
    assert (
        "paced (a 40 ms pause before each, so every thread on the way has gone idle): "
        "daemon p50 1.50 ms" in text
    )
    assert "| 1,000,000 B |" in text and "2.0x" in text
    assert "### Targets" in text and "- a note" in text


def test_write_section_keeps_the_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    pool = "<!-- bench:pool:begin -->\npool numbers\n<!-- bench:pool:end -->\n"
    path.write_text("# header\n\n" + pool)
    write_section(path, "e2e", "first run")
    write_section(path, "e2e", "second run")
    text = path.read_text()
    begin, end = markers("e2e")
    assert pool in text and text.startswith("# header\n")
    assert text.count(begin) == 1 and text.count(end) == 1
    assert "second run" in text and "first run" not in text


def test_write_section_starts_a_missing_file_with_its_header(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    write_section(path, "cluster", "numbers")
    text = path.read_text()
    assert text.startswith("# sandboxd benchmark results\n")
    assert text.endswith("<!-- bench:cluster:begin -->\nnumbers\n<!-- bench:cluster:end -->\n")
