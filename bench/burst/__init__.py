"""`python -m bench burst`: many Submits at once from one tenant, against bwrap per request."""
