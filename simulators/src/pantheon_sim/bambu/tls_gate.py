"""Reading a TLS ClientHello for the P2S "TLS 1.3 hangs" behaviour (protocol doc 2.2, 11.1).

P2S firmware 01.02.00.00 never answers a ClientHello that offers TLS 1.3 on 8883: the client
waits until its own timeout. The printer's MQTT front (``mqtt_front.py``) reads each
connection's first TLS record with :func:`first_record`; when the printer has that firmware and
:func:`offered_versions` lists TLS 1.3 (0x0304), the connection is held open and never
answered. Clients capped at TLS 1.2 (printer-service) never notice it.
"""

from __future__ import annotations

import struct

TLS13: int = 0x0304
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_SUPPORTED_VERSIONS = 0x002B
_MAX_RECORD = 16384 + 2048


def offered_versions(record: bytes) -> set[int] | None:
    """TLS versions a ClientHello record offers in ``supported_versions``; an empty set when
    it has no such extension (a TLS 1.2-only client); None when ``record`` is not a whole
    ClientHello record."""
    try:
        if record[0] != _HANDSHAKE or len(record) < 5 + 4:
            return None
        (length,) = struct.unpack_from("!H", record, 3)
        body = record[5 : 5 + length]
        if len(body) < length or body[0] != _CLIENT_HELLO:
            return None
        at = 4 + 2 + 32  # handshake header, legacy_version, random
        at += 1 + body[at]  # session id
        (suites,) = struct.unpack_from("!H", body, at)
        at += 2 + suites
        at += 1 + body[at]  # compression methods
        if at == len(body):
            return set()
        (ext_total,) = struct.unpack_from("!H", body, at)
        at += 2
        end = min(len(body), at + ext_total)
        while at + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", body, at)
            at += 4
            if ext_type == _SUPPORTED_VERSIONS:
                count = body[at]
                data = body[at + 1 : at + 1 + count]
                return {struct.unpack_from("!H", data, i)[0] for i in range(0, len(data) - 1, 2)}
            at += ext_len
        return set()
    except (IndexError, struct.error):
        return None


def first_record(buffer: bytes) -> bytes | None:
    """The connection's first TLS record, whole, from what arrived so far: None while more
    bytes are needed; a buffer that does not start with a handshake record is returned as it
    is (not TLS, or not a ClientHello: the TLS layer refuses it)."""
    if len(buffer) < 5:
        return None
    if buffer[0] != _HANDSHAKE:
        return buffer
    (length,) = struct.unpack_from("!H", buffer, 3)
    want = 5 + min(length, _MAX_RECORD)
    return buffer[:want] if len(buffer) >= want else None
