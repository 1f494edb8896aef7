"""TLS to a Bambu printer: TLS 1.2 only, the configured CA, and CN == serial checked by hand.

bambu-lan-protocol.md 2.2: the printer certificate's CN is the serial, not the address, so
hostname checking is off and the CN is compared with the configured serial right after the
handshake, before a single byte of login (access code) is sent. "Insecure" (no certificate
check at all) is an explicit opt-in, logged as a warning.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class CertificateMismatch(ssl.SSLCertVerificationError):
    """The printer's certificate names another serial."""


def peer_common_name(cert: dict[str, Any] | None) -> str | None:
    """The subject CN of a certificate as returned by ``SSLSocket.getpeercert()``."""
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _checking_socket_class(serial: str) -> type[ssl.SSLSocket]:
    class SerialCheckingSocket(ssl.SSLSocket):
        """Verifies the peer's CN right after the handshake (the CA is verified by OpenSSL)."""

        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            common_name = peer_common_name(self.getpeercert())
            if common_name != serial:
                raise CertificateMismatch(
                    f"printer certificate CN {common_name!r} is not the serial {serial!r}"
                )

    return SerialCheckingSocket


def printer_tls_context(
    serial: str, ca_file: Path | None, *, insecure: bool = False
) -> ssl.SSLContext:
    """A client context for one printer's MQTT and FTPS connections.

    Raises ``ValueError`` when neither a CA file nor the insecure opt-in is given.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # X1C/H2D refuse 1.3 and P2S hangs on a 1.3 ClientHello: pin 1.2 both ways (2.2).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        log.warning(
            "TLS certificate verification of printer %s is OFF (BAMBU_TLS_INSECURE=true)", serial
        )
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file is None:
        raise ValueError("BAMBU_CA_FILE is required unless BAMBU_TLS_INSECURE=true")
    context.check_hostname = False  # CN is the serial: checked by SerialCheckingSocket
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(ca_file))
    # Python 3.13 turns on VERIFY_X509_STRICT, which the Bambu CA fails (no key usage).
    context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    context.sslsocket_class = _checking_socket_class(serial)
    return context
