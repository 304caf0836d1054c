"""Trims of asyncssh's per-packet send path on the bastion's two connections of a session.

asyncssh (2.24) sends an empty ``SSH_MSG_IGNORE`` before every packet once encryption is on:
the RFC 4251 section 9.3.1 countermeasure against chosen-plaintext attacks on CBC mode. The
bastion negotiates only AEAD (AES-GCM, chacha20-poly1305) and CTR ciphers on both sides
(``listen.ENCRYPTION_ALGS``, ``upstream.UPSTREAM_CIPHERS``), where that packet protects
nothing, while on the data path it doubles the packets: two encryptions, two ``os.urandom``
calls and two ``send()`` syscalls for every relayed chunk (strace of an echo round trip
through the bastion: 4 sends and 4 getrandom calls; 2 and 2 without the empty ignores).
"""

from __future__ import annotations

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

_EMPTY_IGNORE = (String(b""),)
_INSTALLED = "_bastion_skips_ignore"


def skip_empty_ignores(conn: asyncssh.SSHClientConnection | asyncssh.SSHServerConnection) -> None:
    """Stop ``conn`` from sending the empty ignore packet before each packet (idempotent)."""
    if getattr(conn, _INSTALLED, False):
        return
    send = conn.send_packet  # asyncssh sends every packet, the ignores too, through this name

    def send_packet(pkttype: int, *args: bytes, handler: object = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY_IGNORE:
            return
        send(pkttype, *args, handler=handler)  # type: ignore[arg-type]

    setattr(conn, "send_packet", send_packet)  # noqa: B010 - an instance attribute on purpose
    setattr(conn, _INSTALLED, True)
