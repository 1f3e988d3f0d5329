"""Code that runs inside the jail: the Python bootstrap and node_boot.js.

These files are bound read-only at /opt/sandboxd in every worker. They run as the sandboxed
user, after seccomp, and must not import anything from sandboxd_pool.
"""
