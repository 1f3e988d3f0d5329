"""`python -m bench pool`: the engine against per-request spawns (latency, throughput, PSS), and
`python -m bench.pool.jail_modes` and `python -m bench.pool.cgroup_entry`."""
