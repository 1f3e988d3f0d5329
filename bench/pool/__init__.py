"""`python -m bench pool`: the engine against per-request spawns (latency, throughput, PSS), and
`python -m bench.pool.jail_modes`, `python -m bench.pool.cgroup_entry`,
`python -m bench.pool.cpu_cost`, `python -m bench.pool.cpu_roles` and
`python -m bench.pool.overlay_cost`."""
