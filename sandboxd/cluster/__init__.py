"""Everything that needs Redis (`--redis-url`): the link, the jobs backend, cluster-wide quotas,
the codec of what is stored, and the Lua scripts. Only this package imports `redis`;
tests/unit/test_layers.py keeps it so."""
