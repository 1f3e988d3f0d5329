"""Code that runs inside the zygote process (started by zygote.py, before any pool thread)."""
