"""`python -m bench cluster`: Submit over Redis against Execute; three nodes against one."""
