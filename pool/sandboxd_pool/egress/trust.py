"""The jail's trust store with the pool's egress CA in it.

The jail's OpenSSL default file, /etc/ssl/certs/ca-certificates.crt (Debian's system bundle),
is the host's default bundle with the pool's CA certificate appended: a patch file over the
jail's read-only /etc/ssl layer (or a file of the jail's own /etc when the host has no
/etc/ssl). Python's default context reads it, and a request with egress names it in
SSL_CERT_FILE and REQUESTS_CA_BUNDLE (requests and httpx read those, not the system store).
A Python template writes it once for all its children; an exec'd worker writes it when it
builds its root (about 220 KB here).
"""

from __future__ import annotations

import os
import ssl

JAIL_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def host_bundle() -> str:
    """The host's default CA file (OpenSSL's), as text; "" when there is none."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            with open(candidate, encoding="utf-8", errors="replace") as f:
                return f.read()
    return ""


def jail_bundle(ca_pem: str) -> str:
    system = host_bundle()
    if system and not system.endswith("\n"):
        system += "\n"
    return f"{system}# sandboxd: this pool's egress CA (the proxy's leaf certificates)\n{ca_pem}"
