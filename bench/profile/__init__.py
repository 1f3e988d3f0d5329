"""`python -m bench profile`: one hello, stage by stage, embedded and over gRPC."""
