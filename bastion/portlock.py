"""One bastion per SSH port: refuse a port another process listens on or another bastion holds.

Worker processes share the SSH port through SO_REUSEPORT, and the kernel lets any process of the
same user join such a group: a second bastion (with its own state and audit chain) started on
the same port would silently get half the connections. Two checks close that:

- a **probe** bind without SO_REUSEPORT (with SO_REUSEADDR, so the old process's TIME_WAIT
  connections do not block a restart) fails while anything listens on the port;
- a **lock**: an abstract Unix socket named after the address, bound for the bastion's life. It
  covers the seconds between a bastion reserving the port and its workers listening, is seen
  by every bastion whatever its state folder or user, and the kernel frees it when the process
  dies (no stale lock file).
"""

from __future__ import annotations

import errno
import os
import socket

from bastion.errors import BastionError

_LOCK_PREFIX = "bastion-ssh-port:"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def probe(host: str, port: int) -> None:
    """Raise BastionError if something listens on ``host:port`` (or holds it without reuse)."""
    if port == 0:
        return
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise BastionError(f"cannot listen on {host}:{port}: {_why(exc)}") from None
    finally:
        sock.close()


def lock(host: str, port: int) -> socket.socket:
    """Hold the port's lock until the returned socket is closed (or the process exits)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"\0{_LOCK_PREFIX}{host}:{port}")
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BastionError(
                f"cannot listen on {host}:{port}: another bastion already serves this port"
            ) from None
        raise BastionError(f"cannot lock {host}:{port}: {_why(exc)}") from None
    os.set_inheritable(sock.fileno(), False)
    return sock


def claim(host: str, port: int) -> socket.socket:
    """Lock, then probe: the port is this bastion's alone. Close the socket to release it."""
    held = lock(host, port)
    try:
        probe(host, port)
    except BaseException:
        held.close()
        raise
    return held


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another process listens on this port)"
    return os.strerror(exc.errno) if exc.errno else str(exc)

