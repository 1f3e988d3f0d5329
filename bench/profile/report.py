"""The profile's section of bench/RESULTS.md (pure: no engine, no timing)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.common.report import md_table
from bench.profile.hooks import ENGINE_HOOKS, SERVICER_HOOKS, hook_of
from bench.profile.stages import Profile

# Where each timestamp comes from, beyond the hooks (hooks.py says which method notes which).
OTHER_SOURCES = {
    "user_start": "the program's first statement (`time.monotonic()` / "
    "`process.hrtime.bigint()`, printed)",
    "exit_event": "Node's `process.on('exit')` handler in the program (printed)",
    "client_call": "the benchmark, just before `Client.execute`",
    "client_done": "the benchmark, when `Client.execute` returned (response converted)",
    "received": "the daemon's ExecuteRequest decoder (`sandboxd.api.service.lenient_deserializer`)",
    "encoded": "the daemon's ExecuteResponse encoder (`response_serializer`)",
}


def source_of(key: str) -> str:
    if key in OTHER_SOURCES:
        return OTHER_SOURCES[key]
    return "`" + hook_of(key, [*ENGINE_HOOKS, *SERVICER_HOOKS]) + "`"


@dataclass
class ProfileReport:
    command: str
    machine: dict[str, str]
    iterations: int
    pause_ms: dict[str, float]
    warm_workers: int
    profiles: list[Profile]
    notes: list[str] = field(default_factory=list)


def profile_table(profile: Profile) -> str:
    rows = [[s.name, f"{s.p50_ms:.3f}", f"{s.p90_ms:.3f}"] for s in profile.stages]
    summed = sum(s.p50_ms for s in profile.stages if "'exit' event" not in s.name)
    if profile.total is not None:
        rows.append(
            [
                f"**{profile.total.name}**",
                f"{profile.total.p50_ms:.3f}",
                f"{profile.total.p90_ms:.3f}",
            ]
        )
        rows.append(["(sum of the stages' p50s)", f"{summed:.3f}", ""])
    return md_table(["stage", "p50 ms", "p90 ms"], rows)


def render(report: ProfileReport) -> str:
    machine = report.machine
    pauses = ", ".join(f"{rt} {ms:g} ms" for rt, ms in report.pause_ms.items())
    keys = [
        "client_call",
        "received",
        "handler",
        "call",
        "taken",
        "limits_start",
        "limits_done",
        "frame_sent",
        "user_start",
        "exit_event",
        "exit_seen",
        "outcome_built",
        "returned",
        "handler_done",
        "encoded",
        "client_done",
    ]
    lines = [
        f"## Per-stage profile: `{report.command}` — {machine.get('date', '')}",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items() if k != "date") + ".",
        "",
        f"One hello at a time, {report.iterations} recorded executions per path after a "
        f"warm-up, paced (an untimed pause before each: {pauses}; embedded also waits until "
        f"the pool has its {report.warm_workers} warm workers again). The program prints the "
        "clock as its first statement instead of `hello` (Node also from its `exit` event). "
        "**embedded**: `Pool.execute` in the benchmark process. **gRPC**: `Client.execute` "
        "against `sandboxd serve` run by `python -m bench.profile.daemon` (the daemon's own "
        "main, with the same hooks). Every timestamp is CLOCK_MONOTONIC, the same clock in "
        "the benchmark, the daemon and the sandbox; the engine's code is not changed, its "
        "methods are wrapped in the measuring process only (`bench/profile/hooks.py`). "
        "Stages are consecutive, so their p50s add up to about the total's.",
        "",
        "Where each timestamp comes from: "
        + "; ".join(f"`{k}` {source_of(k)}" for k in keys)
        + ".",
        "",
    ]
    for profile in report.profiles:
        lines += [f"### {profile.title}", "", profile_table(profile), ""]
        if profile.started_before_sent:
            lines += [
                f"In {profile.started_before_sent} of {profile.executions} executions the "
                "program read its clock before `_send_frame` had returned (the pool's thread "
                "was preempted after the send): that stage is negative there.",
                "",
            ]
        if profile.started_after_exit:
            lines += [
                f"**In {profile.started_after_exit} of {profile.executions} executions the "
                "program's clock was later than the exit seen: the clocks differ, the "
                "program's stages are wrong.**",
                "",
            ]
    if report.notes:
        lines += ["### Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(lines)
