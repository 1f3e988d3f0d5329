"""`python -m bench egress`: the egress proxy against a direct connection; worker boot with it."""
