"""`python -m bench.container.start`: container start to SERVING."""
