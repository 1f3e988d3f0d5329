"""`python -m bench humaneval`: HumanEval's canonical solutions through the daemon and bwrap."""
