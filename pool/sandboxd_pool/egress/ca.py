"""The pool's egress CA: made in memory when the pool starts, trusted only inside the jail.

The proxy opens a program's TLS only for a host the tenant has headers for (to add them); it
answers that TLS with a leaf certificate for the host, signed by this CA. The CA's private key
exists only in the pool's memory (never on disk, never in the jail or the zygote); its
certificate goes into every worker's trust store: the jail's system bundle
(/etc/ssl/certs/ca-certificates.crt, OpenSSL's default file, which a request with egress also
names in SSL_CERT_FILE and REQUESTS_CA_BUNDLE) is the host's with this certificate appended
(egress/trust.py), and the Node bootstrap adds it to the default secure context of a request
with egress (_in_worker/node_egress.js). A new pool means a new CA.

Keys are ECDSA P-256 (a key and a signature in well under a millisecond). One leaf key serves
every host of this pool; leaf certificates are cached per host (LEAF_CACHE) and valid for
LEAF_VALIDITY.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import ssl
import threading
from collections import OrderedDict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .policy import is_address

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=7)
LEAF_CACHE = 256
BACKDATE = datetime.timedelta(hours=1)  # clocks of the jail and the host are the same; margin
ALPN = ["http/1.1"]  # the proxy speaks HTTP/1.1 on both sides of an opened TLS connection


class CertificateAuthority:
    def __init__(self) -> None:
        self.common_name = f"sandboxd-egress-ca-{secrets.token_hex(8)}"
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.common_name)])
        public = self._key.public_key()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM).decode()
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key_pem = self._leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._contexts: OrderedDict[str, tuple[ssl.SSLContext, datetime.datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server-side TLS context presenting a leaf certificate for `host` (a normalized name
        or address), signed by this CA."""
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            cached = self._contexts.get(host)
            if cached is not None and cached[1] > now + LEAF_VALIDITY / 2:
                self._contexts.move_to_end(host)
                return cached[0]
        context, expires = self._make_context(host, now)
        with self._lock:
            self._contexts[host] = (context, expires)
            self._contexts.move_to_end(host)
            while len(self._contexts) > LEAF_CACHE:
                self._contexts.popitem(last=False)
        return context

    def _make_context(
        self, host: str, now: datetime.datetime
    ) -> tuple[ssl.SSLContext, datetime.datetime]:
        expires = now + LEAF_VALIDITY
        public = self._leaf_key.public_key()
        san: x509.GeneralName = (
            x509.IPAddress(ipaddress.ip_address(host)) if is_address(host) else x509.DNSName(host)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self._cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(expires)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        leaf = builder.sign(self._key, hashes.SHA256())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(ALPN)
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self._leaf_key_pem
        # load_cert_chain reads a path: a memory file, never the disk.
        fd = os.memfd_create("sandboxd-egress-leaf", os.MFD_CLOEXEC)
        try:
            os.write(fd, chain)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return context, expires


def upstream_context(extra_ca_file: str = "") -> ssl.SSLContext:
    """How the proxy verifies the real servers: the system trust store, plus the operator's
    extra CA bundle (`--egress-ca-bundle`), hostname checked; HTTP/1.1 offered by ALPN."""
    context = ssl.create_default_context()
    if extra_ca_file:
        context.load_verify_locations(cafile=extra_ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN)
    return context
