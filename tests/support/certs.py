"""Test certificates: a CA, and server/client certificates it signs, written as PEM files.

Tests need real TLS material for etcd (server TLS, mutual TLS) and for HTTPS hprose servers.
Everything is generated with ``cryptography`` into a folder the test owns (``tmp_path``): no
file is shared between tests and nothing outlives the test.  Server certificates carry the
loopback names a test may dial: IP SANs 127.0.0.1 and ::1 and the DNS name ``localhost``.
EC P-256 keys keep generation fast (milliseconds, where RSA takes tens).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES: list[x509.GeneralName] = [
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
    x509.DNSName("localhost"),
]


@dataclass(frozen=True)
class CertFiles:
    """Paths of one certificate and its private key (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """A CA and the certificates a test needs, all under one folder."""

    ca: Path
    server: CertFiles
    client: CertFiles


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertFiles:
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return CertFiles(cert_path, key_path)


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, folder: Path, common_name: str = "hprose-cluster test CA"):
        self.folder = Path(folder)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.files = _write(self.folder, "ca", self.cert, self.key)

    @property
    def ca_file(self) -> Path:
        return self.files.cert

    def issue(self, stem: str, common_name: str, *, server: bool = True, client: bool = True) -> CertFiles:
        """A certificate for the loopback names, usable for server and/or client auth."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(LOOPBACK_NAMES), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _write(self.folder, stem, cert, key)


def make_pki(folder: Path, client_name: str = "client") -> Pki:
    """A fresh CA with one server and one client certificate, under ``folder``."""
    ca = CertificateAuthority(folder)
    return Pki(ca=ca.ca_file,
                   server=ca.issue("server", "localhost", server=True, client=True),
                   client=ca.issue("client", client_name, server=False, client=True))


def server_context(pki: Pki, require_client_cert: bool = False) -> ssl.SSLContext:
    """A TLS server context with the PKI's server certificate (and, when asked, one that
    requires a client certificate signed by its CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


def client_context(ca: Path, cert: Any = None) -> ssl.SSLContext:
    """A verifying TLS client context trusting ``ca`` (and presenting ``cert`` if given)."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context
