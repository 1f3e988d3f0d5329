"""The stages of one execution, from the timestamps hooks.py and the program noted, and their
p50/p90 (pure: no engine, no timing).

Every timestamp is CLOCK_MONOTONIC in seconds, read in whichever process noted it: the
benchmark (client), the daemon (servicer and pool) and the sandboxed program itself (its
first statement prints `time.monotonic()` / `process.hrtime.bigint()`; the jail has no time
namespace, so it reads the same clock). A stage is the time between two of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.common.stats import percentile


@dataclass(frozen=True)
class Stage:
    name: str
    start: str  # timestamp keys
    end: str
    optional: bool = False  # a stage the program may not report (Node's exit event)


ENGINE_STAGES = (
    Stage("take a worker (execute called -> worker taken)", "call", "taken"),
    Stage("worker taken -> limits start", "taken", "limits_start"),
    Stage("apply limits", "limits_start", "limits_done"),
    Stage("send the request frame", "limits_done", "frame_sent"),
    Stage("frame sent -> user code starts", "frame_sent", "user_start"),
    Stage("user code starts -> exit seen", "user_start", "exit_seen"),
    Stage("exit seen -> outcome built", "exit_seen", "outcome_built"),
    Stage("outcome built -> execute returns", "outcome_built", "returned"),
)
NODE_EXIT_STAGES = (
    Stage("user code starts -> 'exit' event", "user_start", "exit_event", optional=True),
    Stage("'exit' event -> exit seen", "exit_event", "exit_seen", optional=True),
)
GRPC_BEFORE = (
    Stage("client call -> request decoded", "client_call", "received"),
    Stage("request decoded -> handler runs", "received", "handler"),
    Stage("servicer: handler -> pool.execute called", "handler", "call"),
)
GRPC_AFTER = (
    Stage("servicer: pool returns -> handler returns", "returned", "handler_done"),
    Stage("handler returns -> response encoded", "handler_done", "encoded"),
    Stage("response encoded -> client has the result", "encoded", "client_done"),
)
ENGINE_TOTAL = Stage("total: execute called -> returned", "call", "returned")
GRPC_TOTAL = Stage("total: client call -> client has the result", "client_call", "client_done")


def stages_for(grpc: bool, node: bool) -> tuple[list[Stage], Stage]:
    """The stages of a path in order, and its total."""
    engine = list(ENGINE_STAGES)
    if node:
        engine += list(NODE_EXIT_STAGES)
    if grpc:
        return [*GRPC_BEFORE, *engine, *GRPC_AFTER], GRPC_TOTAL
    return engine, ENGINE_TOTAL


@dataclass(frozen=True)
class StageStats:
    name: str
    samples: int
    p50_ms: float
    p90_ms: float


@dataclass
class Profile:
    """One path (e.g. embedded Python): each stage's p50/p90 over the recorded executions."""

    title: str
    executions: int
    stages: list[StageStats] = field(default_factory=list)
    total: StageStats | None = None
    # executions whose program read its clock before _send_frame returned (the pool's thread
    # was preempted between the send and its timestamp), or after the exit was seen (which
    # no execution can do on one clock)
    started_before_sent: int = 0
    started_after_exit: int = 0


class StageMissing(RuntimeError):
    pass


def summarize(title: str, timelines: list[dict[str, float]], grpc: bool, node: bool) -> Profile:
    """Stage statistics; StageMissing names a timestamp some execution lacks (a hook that no
    longer fires on the execution's path), unless the stage is optional."""
    stages, total = stages_for(grpc, node)
    profile = Profile(title=title, executions=len(timelines))
    for stage in [*stages, total]:
        values = []
        for marks in timelines:
            if stage.start not in marks or stage.end not in marks:
                if stage.optional:
                    continue
                missing = stage.end if stage.start in marks else stage.start
                raise StageMissing(missing)
            values.append((marks[stage.end] - marks[stage.start]) * 1e3)
        if not values:
            continue
        values.sort()
        stats = StageStats(stage.name, len(values), percentile(values, 50), percentile(values, 90))
        if stage is total:
            profile.total = stats
        else:
            profile.stages.append(stats)
    profile.started_before_sent = sum(1 for m in timelines if m["user_start"] < m["frame_sent"])
    profile.started_after_exit = sum(1 for m in timelines if m["user_start"] > m["exit_seen"])
    return profile
