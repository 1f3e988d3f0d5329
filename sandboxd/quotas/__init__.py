"""Tenant quotas on this node: the `Quotas` protocol, local concurrency slots, rates and CPU
time. The cluster-wide ones (Redis) are in sandboxd.cluster.quotas."""
