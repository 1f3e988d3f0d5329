"""What the benchmark commands share: runtimes, timing loops, statistics, machine facts,
per-request baselines, daemons as subprocesses, and the report's tables."""
