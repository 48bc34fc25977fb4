"""Local TCP ports for the dev environment's processes (API server, Prometheus, operator listeners)."""

from __future__ import annotations

import socket


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:`port` can be bound now (a port in TIME_WAIT counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """`preferred` if it is free, else a port the kernel picks."""
    if preferred and port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
