"""Trims of asyncssh's per-packet paths on the bastion's two connections of a session.

``tune(conn)`` installs them on the agent's connection and on the upstream one.

**Sending.** asyncssh (2.24) sends an empty ``SSH_MSG_IGNORE`` before every packet once
encryption is on: the RFC 4251 section 9.3.1 countermeasure against chosen-plaintext attacks on
CBC mode. The bastion negotiates only AEAD (AES-GCM, chacha20-poly1305) and CTR ciphers on both
sides (``listen.ENCRYPTION_ALGS``, ``upstream.UPSTREAM_CIPHERS``), where that packet protects
nothing, while on the data path it doubles the packets: two encryptions, two ``os.urandom``
calls and two ``send()`` syscalls for every relayed chunk (strace of an echo round trip
through the bastion: 4 sends and 4 getrandom calls; 2 and 2 without the empty ignores).

**Receiving.** asyncssh keeps unparsed input in a ``bytes`` object and, for every packet it
takes off the front, copies the rest (``self._inpbuf = self._inpbuf[rem:]``). One 256 KiB read
of 32 KiB packets is copied ~3.5 times over, into fresh allocations that fault in new pages:
that was a quarter of the bastion's CPU on a bulk transfer from a target (py-spy). For a read
of ``LARGE_READ`` bytes or more, a ``ReceiveBuffer`` answers the same operations but consumes
from the front by moving an offset, so each received byte is copied at most once (when a read
ends inside a packet). Small reads (keystrokes, echoes) keep asyncssh's ``bytes``, whose
slicing is cheaper per packet than any Python class.

**Per packet, process-wide** (``install_packet_trims``, for asyncssh 2.24 only): AES-GCM
builds its ``AESGCM`` key object once per key instead of once per packet; chacha20-poly1305
opens two ChaCha20 contexts per packet instead of three and does not copy the packet to
authenticate it (32 KiB packet 18.6 → 15.3 µs, 48-byte packet 10.6 → 7.9 µs); packet logging
formats its message only when asyncssh's debug level would print it (1.1 µs and 0.7 µs per
packet in micro-benchmarks). With the small-read path above, the bastion's user CPU per echo
round trip (two packets in, two out) fell from 210-260 to 163-170 µs.
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.crypto import chacha as _chacha
from asyncssh.crypto import cipher as _cipher
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger, String
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.algorithms import ChaCha20
from cryptography.hazmat.primitives.poly1305 import Poly1305

_EMPTY_IGNORE = (String(b""),)
_SKIPS_IGNORES = "_bastion_skips_ignore"
_BUFFER_ATTR = "_inpbuf"  # asyncssh.connection.SSHConnection's unparsed input (bytes)
_RECEIVE_HOOKED = "_bastion_receive_buffer"
LARGE_READ = 8192  # reads this large are parsed from a ReceiveBuffer
TRIMMED_ASYNCSSH = ("2.24.",)  # the versions whose internals the per-packet trims were read from

Connection = asyncssh.SSHClientConnection | asyncssh.SSHServerConnection


def tune(conn: Connection) -> None:
    """Install the trims on ``conn`` and the process-wide ones (idempotent)."""
    install_packet_trims()
    skip_empty_ignores(conn)
    use_receive_buffer(conn)


def skip_empty_ignores(conn: Connection) -> None:
    """Stop ``conn`` from sending the empty ignore packet before each packet (idempotent)."""
    if getattr(conn, _SKIPS_IGNORES, False):
        return
    send = conn.send_packet  # asyncssh sends every packet, the ignores too, through this name

    def send_packet(pkttype: int, *args: bytes, handler: object = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY_IGNORE:
            return
        send(pkttype, *args, handler=handler)  # type: ignore[arg-type]

    setattr(conn, "send_packet", send_packet)  # noqa: B010 - an instance attribute on purpose
    setattr(conn, _SKIPS_IGNORES, True)


def use_receive_buffer(conn: Connection) -> bool:
    """Make ``conn`` parse large reads from a ``ReceiveBuffer`` (idempotent). Returns False,
    and leaves asyncssh's own buffer, if this asyncssh does not keep its input where 2.24 does.
    """
    if getattr(conn, _RECEIVE_HOOKED, False):
        return True
    if not isinstance(getattr(conn, _BUFFER_ATTR, None), bytes | ReceiveBuffer):
        return False
    receive = conn.data_received  # asyncio's transport calls the protocol's attribute

    def data_received(data: bytes, datatype: object = None) -> None:
        if len(data) >= LARGE_READ:
            current = getattr(conn, _BUFFER_ATTR)
            if type(current) is bytes:
                # Every later value derives from this one (``+`` and ``[n:]`` return
                # ReceiveBuffer) until the buffer runs empty and becomes b"" again.
                setattr(conn, _BUFFER_ATTR, ReceiveBuffer(current))
        receive(data, datatype)  # type: ignore[arg-type]

    setattr(conn, "data_received", data_received)  # noqa: B010 - an instance attribute
    setattr(conn, _RECEIVE_HOOKED, True)
    return True


_packet_trims: bool | None = None


def install_packet_trims() -> bool:
    """Patch asyncssh's per-packet AES-GCM, chacha20-poly1305 and packet logging (process-wide,
    idempotent). Only for the asyncssh versions in ``TRIMMED_ASYNCSSH``: on any other, nothing
    is patched and False is returned (stock behaviour, just slower)."""
    global _packet_trims
    if _packet_trims is None:
        _packet_trims = asyncssh.__version__.startswith(TRIMMED_ASYNCSSH)
        if _packet_trims:
            _trim_gcm(_cipher.GCMCipher)
            _trim_chacha(_chacha.ChachaCipher)
            _trim_packet_log(SSHPacketLogger)
    return _packet_trims


def _trim_gcm(gcm: Any) -> None:
    mac_size = _cipher._GCM_MAC_SIZE

    def aead(self: Any) -> AESGCM:
        key_object: AESGCM | None = self.__dict__.get("_bastion_aead")
        if key_object is None:  # one per cipher instance: a rekey makes a new instance
            key_object = self._bastion_aead = AESGCM(self._key)
        return key_object

    def encrypt_and_sign(self: Any, header: bytes, data: bytes) -> tuple[bytes, bytes]:
        data = aead(self).encrypt(self._iv, data, header)
        self._update_iv()
        return header + data[:-mac_size], data[-mac_size:]

    def verify_and_decrypt(self: Any, header: bytes, data: bytes, mac: bytes) -> bytes | None:
        try:
            decrypted: bytes | None = aead(self).decrypt(self._iv, data + mac, header)
        except InvalidTag:
            decrypted = None
        self._update_iv()
        return decrypted

    gcm.encrypt_and_sign = encrypt_and_sign
    gcm.verify_and_decrypt = verify_and_decrypt


_COUNTER_0 = bytes(8)  # ChaCha20's 64-bit block counter, little-endian, before the nonce
_BLOCK_0 = bytes(64)


def _trim_chacha(chacha: Any) -> None:
    """chacha20-poly1305@openssh.com with one payload-key context per packet: its block 0 is
    the Poly1305 key and the payload follows from block 1 (asyncssh opens a context for each),
    and the tag computed over the parts instead of a concatenated copy."""

    def payload_stream(self: Any, nonce: bytes) -> tuple[Any, bytes]:
        ctx = Cipher(ChaCha20(self._key, _COUNTER_0 + nonce), mode=None).encryptor()
        return ctx, ctx.update(_BLOCK_0)[:32]

    def encrypt_and_sign(
        self: Any, header: bytes, data: bytes, nonce: bytes
    ) -> tuple[bytes, bytes]:
        header = (
            Cipher(ChaCha20(self._adkey, _COUNTER_0 + nonce), mode=None).encryptor().update(header)
        )
        ctx, poly_key = payload_stream(self, nonce)
        packet = header + ctx.update(data)
        return packet, Poly1305.generate_tag(poly_key, packet)

    def verify_and_decrypt(
        self: Any, header: bytes, data: bytes, nonce: bytes, tag: bytes
    ) -> bytes | None:
        ctx, poly_key = payload_stream(self, nonce)
        mac = Poly1305(poly_key)
        mac.update(header)
        mac.update(data)
        try:
            mac.verify(tag)
        except InvalidSignature:
            return None
        decrypted: bytes = ctx.update(data)
        return decrypted

    chacha.encrypt_and_sign = encrypt_and_sign
    chacha.verify_and_decrypt = verify_and_decrypt


def _trim_packet_log(packet_logger: Any) -> None:
    log_packet = packet_logger._log_packet

    def _log_packet(self: Any, *args: Any) -> None:
        if SSHLogger._debug_level >= 3:  # what SSHLogger.packet checks before logging
            log_packet(self, *args)

    packet_logger._log_packet = _log_packet


class ReceiveBuffer:
    """The bytes operations asyncssh's packet parser uses, with O(1) consumption from the
    front: ``buf[n:]`` shares the data and moves an offset; ``buf[a:b]`` (bounded) and
    ``buf[:n]`` return ``bytes``; ``buf + data`` appends, copying only the unparsed rest."""

    __slots__ = ("_data", "_start")

    def __init__(self, data: bytes = b"", start: int = 0) -> None:
        self._data = data
        self._start = start

    def __len__(self) -> int:
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    def __add__(self, more: Any) -> ReceiveBuffer:
        more = more if type(more) is bytes else bytes(more)
        if self._start >= len(self._data):
            return ReceiveBuffer(more)  # nothing left over: take the new read as it is
        return ReceiveBuffer(self._data[self._start :] + more)

    def __getitem__(self, key: slice) -> Any:
        if not isinstance(key, slice) or key.step is not None:
            raise TypeError("ReceiveBuffer supports only [a:b] slices")
        start, stop = key.start or 0, key.stop
        if start < 0 or (stop is not None and stop < 0):
            start, stop = self._bound(start), None if stop is None else self._bound(stop)
        base, data = self._start, self._data
        if stop is None:  # the rest: share the data (or go back to bytes once it is all parsed)
            rest = base + start
            return ReceiveBuffer(data, rest) if rest < len(data) else b""
        return data[base + start : base + stop]  # bytes slicing clamps at len(data)

    def _bound(self, index: int) -> int:
        """A negative index counted from the end, as bytes does (clamped at 0)."""
        return max(0, len(self) + index) if index < 0 else index

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        base, size = self._start, len(self)
        lo = base + min(self._bound(start), size)
        hi = base + (size if end is None else min(self._bound(end), size))
        found = self._data.find(sub, lo, hi)
        return found - base if found >= 0 else -1

    def __bytes__(self) -> bytes:
        return self._data[self._start :]

    def __repr__(self) -> str:
        return f"ReceiveBuffer({bytes(self)!r})"
