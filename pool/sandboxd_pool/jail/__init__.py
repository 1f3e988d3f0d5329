"""The jail: one module per isolation concern, composed in one ordered `enter()` (enter.py).

Everything in this package runs in the zygote or in a freshly cloned child before it execs the
runtime, so it uses only the standard library and ctypes. The seccomp policy's compiler is
not here but in _in_zygote/seccomp_policy.py: it needs libseccomp's bindings, and only the zygote
compiles (once); the jail only loads the compiled program (seccomp.py).
"""
