"""sandboxd benchmark harness.

`python -m bench pool` measures the warm pool side by side with what people build
instead (bare interpreter spawn, per-request bubblewrap, per-request `unshare`) in one
invocation, prints ratios and PASS/MISS against the targets, and records the run in
`bench/RESULTS.md`.

One module per concern:

- `runtimes.py`    the interpreters, the hello program, the clean environment
- `baselines.py`   per-request process spawns: bare, bwrap, unshare
- `pool_bench.py`  the engine (`sandboxd_pool.Pool`) driven the same way
- `harness.py`     timing loops: sequential latency, threaded throughput
- `stats.py`       percentiles and the result records
- `memory.py`      PSS of warm workers, of bare idle interpreters, of the pool itself
- `targets.py`     the performance targets and their PASS/MISS verdicts
- `machine.py`     date, kernel, CPUs, versions: what a result was measured on
- `report.py`      tables for the terminal and `RESULTS.md`
- `pool_command.py` the `pool` subcommand: runs all of the above in order
"""
