"""The simulator's private CA and one server certificate per printer (CN = serial, section 2.2).

Files are kept in the data directory and reused on the next start when they still match,
so clients that pinned ``ca.pem`` keep working across restarts.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its unencrypted PEM key."""

    cert_file: Path
    key_file: Path


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA key")
    return key


def ensure_ca(directory: Path) -> CertPair:
    """``<dir>/ca.pem`` + ``<dir>/ca.key``: created once, then reused."""
    pair = CertPair(directory / "ca.pem", directory / "ca.key")
    if pair.cert_file.is_file() and pair.key_file.is_file():
        return pair
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pantheon bambu-sim CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(pair.key_file, key)
    pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def ensure_printer_cert(ca: CertPair, directory: Path, serial: str) -> CertPair:
    """A server certificate for ``serial`` signed by ``ca`` (no SAN: CN is the serial)."""
    pair = CertPair(directory / "cert.pem", directory / "key.pem")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_file.read_bytes())
    if pair.cert_file.is_file() and pair.key_file.is_file():
        existing = x509.load_pem_x509_certificate(pair.cert_file.read_bytes())
        cn = existing.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if cn and cn[0].value == serial and existing.issuer == ca_cert.subject:
            return pair
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _load_key(ca.key_file)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pair.key_file, key)
    pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair
