"""`python -m bench e2e`: the daemon over gRPC against the same service with bwrap per request."""
