"""`python -m bench environments`: a warm environment against a bare interpreter with the same
packages installed."""
