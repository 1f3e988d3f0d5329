"""Asynchronous executions (Submit, GetExecution, CancelExecution): the contract between the
servicer and a backend, the embedded backend and its store. The Redis backend is in
sandboxd.cluster.jobs."""
