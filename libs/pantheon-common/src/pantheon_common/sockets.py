"""Small socket helpers shared by the TCP relays (the simulator's TLS gate, test proxies)."""

from __future__ import annotations

import contextlib
import socket


def pump(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until either side closes or fails, then shut both down.

    One direction of a TCP relay: run one per direction, each in its own thread; whichever
    ends first ends the other (its blocked ``recv`` returns once the socket is shut down).
    """
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
