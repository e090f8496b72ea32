"""Self-signed CA and ECDSA P-256 serving certificates for the webhook."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.names import CA_FILE, CERT_FILE, KEY_FILE

__all__ = ["CA_FILE", "CERT_FILE", "KEY_FILE", "CertBundle"]

CA_VALIDITY = dt.timedelta(days=3650)
SERVING_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class CertBundle:
    """PEM bytes of a CA certificate and a serving certificate with its key."""

    ca_cert: bytes
    cert: bytes
    key: bytes
    # Kept so the serving certificate can be renewed under the same CA (caBundle unchanged).
    ca_key: bytes | None = None


def service_hosts(service: str, namespace: str) -> list[str]:
    """The DNS names kube-apiserver may use to reach a Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_ca(
    common_name: str = "logaas-webhook-ca",
    validity: dt.timedelta = CA_VALIDITY,
) -> tuple[bytes, bytes]:
    """A new CA: (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_serving(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    hosts: list[str],
    validity: dt.timedelta = SERVING_VALIDITY,
) -> tuple[bytes, bytes]:
    """A serving certificate for hosts (DNS names or IPs), signed by the CA: (cert, key)."""
    if not hosts:
        raise ValueError("a serving certificate needs at least one host")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def generate_bundle(hosts: list[str]) -> CertBundle:
    ca_cert, ca_key = generate_ca()
    cert, key = issue_serving(ca_cert, ca_key, hosts)
    return CertBundle(ca_cert=ca_cert, cert=cert, key=key, ca_key=ca_key)


def not_after(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def write_bundle(bundle: CertBundle, out_dir: Path) -> None:
    """Write ca.crt, tls.crt and tls.key (0600); the key before the certificate that needs it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / CA_FILE, bundle.ca_cert, 0o644)
    _write_atomic(out_dir / KEY_FILE, bundle.key, 0o600)
    _write_atomic(out_dir / CERT_FILE, bundle.cert, 0o644)


def ensure_bundle(out_dir: Path, hosts: list[str]) -> bool:
    """Generate a bundle into out_dir unless tls.crt and tls.key exist. True if generated."""
    if (out_dir / CERT_FILE).is_file() and (out_dir / KEY_FILE).is_file():
        return False
    write_bundle(generate_bundle(hosts), out_dir)
    return True
