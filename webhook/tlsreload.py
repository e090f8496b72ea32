"""A TLS certificate source that follows rotated files and keeps the last good certificate.

The listening socket uses one SSLContext whose SNI callback hands each new handshake the
newest good context. Connections already open keep theirs, so a rotation never fails a request.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
import ssl
import threading
from pathlib import Path

from webhook.names import CERT_FILE, KEY_FILE

log = logging.getLogger(__name__)


# The server reads one date from its certificate; a few lines of DER spare it the ~8 MiB that
# loading the cryptography package costs every replica (certificates are made elsewhere).
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """DER tag, content start and content end of the element at pos."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def pem_not_after(pem: bytes) -> dt.datetime:
    """notAfter of the first certificate in a PEM bundle."""
    match = _PEM.search(pem)
    if not match:
        raise ValueError("no PEM certificate")
    der = base64.b64decode(b"".join(match.group(1).split()))
    _, start, _ = _tlv(der, 0)  # Certificate
    _, pos, _ = _tlv(der, start)  # TBSCertificate
    fields: list[tuple[int, int]] = []
    while len(fields) < 5:
        tag, content, end = _tlv(der, pos)
        if tag != 0xA0:  # [0] version is optional
            fields.append((content, end))
        pos = end
    content, _ = fields[3]  # serial, signature, issuer, validity
    tag, after_start, after_end = _tlv(der, _tlv(der, content)[2])
    text = der[after_start:after_end].decode("ascii")
    layout = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    return dt.datetime.strptime(text, layout).replace(tzinfo=dt.UTC)


class CertificateSource:
    def __init__(self, cert_dir: Path) -> None:
        self.cert_path = cert_dir / CERT_FILE
        self.key_path = cert_dir / KEY_FILE
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._fingerprint = b""
        self.not_after: dt.datetime | None = None
        self.last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self._context is not None

    def _new_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def reload(self) -> bool:
        """Load the files if they changed. True when a new certificate was taken."""
        try:
            cert = self.cert_path.read_bytes()
            key = self.key_path.read_bytes()
        except OSError as err:
            self.last_error = f"cannot read certificate files: {err.strerror}"
            return False
        fingerprint = hashlib.sha256(cert + b"\0" + key).digest()
        if fingerprint == self._fingerprint:
            return False
        try:
            # The files may be mid-rotation (new key, old cert): a mismatch fails here and the
            # last good context stays in use until the next check.
            ctx = self._new_context()
            expiry = pem_not_after(cert)
        except (OSError, ssl.SSLError, ValueError) as err:
            self.last_error = f"certificate files not usable yet: {err}"
            log.warning("tls: %s; keeping the current certificate", self.last_error)
            return False
        with self._lock:
            self._context = ctx
            self._fingerprint = fingerprint
            self.not_after = expiry
            self.last_error = None
        log.info("tls: serving certificate loaded, valid until %s", expiry.isoformat())
        return True

    def server_context(self) -> ssl.SSLContext:
        """The context to listen with; it delegates every handshake to the newest good one."""
        if self._context is None and not self.reload():
            raise RuntimeError(self.last_error or "no certificate")
        listening = self._new_context()
        listening.sni_callback = self._pick
        return listening

    def _pick(self, sock: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
        current = self._context
        if current is not None:
            sock.context = current
