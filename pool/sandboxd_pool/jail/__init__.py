"""The jail: one module per isolation concern, composed in one ordered `enter()` (enter.py).

Everything in this package runs in the zygote or in a freshly cloned child before it execs the
runtime, so it uses only the standard library and ctypes.
"""
