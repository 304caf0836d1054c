"""The bastion's trims of asyncssh's send path, observed on the wire (a counting TCP proxy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncssh
import pytest

from bastion.ssh import listen, upstream
from bastion.ssh.wire import skip_empty_ignores

LINE = b"ping 0123456789\n"
WRITES = 200


class _Echo(asyncssh.SSHServerSession[bytes]):
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def shell_requested(self) -> bool:
        return True

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.chan.write(data)


class _Collect(asyncssh.SSHClientSession[bytes]):
    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.data += data


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # no authentication: this only exercises the packet layer

    def session_requested(self) -> _Echo:
        return _Echo()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[int]
) -> None:
    try:
        while data := await reader.read(65536):
            seen[0] += len(data)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def proxied_server() -> AsyncIterator[tuple[int, list[int]]]:
    """An echo SSH server behind a TCP proxy that counts the bytes the client sends."""
    server = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        server_factory=_Server, encoding=None,
    )  # fmt: skip
    port = server.sockets[0].getsockname()[1]
    sent = [0]

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(_pipe(reader, up_writer, sent), _pipe(up_reader, writer, [0]))

    proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
    yield proxy.sockets[0].getsockname()[1], sent
    proxy.close()
    server.close()


async def _bytes_per_write(port: int, sent: list[int], skip: bool, cipher: str) -> float:
    async with asyncssh.connect(
        "127.0.0.1", port, known_hosts=None, encryption_algs=[cipher], config=[],
        agent_path=None, username="x",
    ) as conn:  # fmt: skip
        if skip:
            skip_empty_ignores(conn)
            skip_empty_ignores(conn)  # idempotent
        chan, session = await conn.create_session(_Collect, encoding=None)
        await asyncio.sleep(0.1)
        before = sent[0]
        for _ in range(WRITES):
            chan.write(LINE)
            await asyncio.sleep(0)
        for _ in range(100):
            if len(session.data) >= WRITES * len(LINE):
                break
            await asyncio.sleep(0.05)
        assert session.data == LINE * WRITES  # everything still arrives, echoed back
        return (sent[0] - before) / WRITES


@pytest.mark.parametrize("cipher", ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"])
async def test_one_packet_per_write_without_empty_ignores(
    proxied_server: tuple[int, list[int]], cipher: str
) -> None:
    """asyncssh puts an empty ignore packet before each data packet; with the trim, each write
    of a short line costs one packet on the wire, and the data still arrives."""
    port, sent = proxied_server
    stock = await _bytes_per_write(port, sent, False, cipher)
    trimmed = await _bytes_per_write(port, sent, True, cipher)
    assert trimmed < 60, trimmed  # one packet: 4 length + 32 payload + 16 tag (+ TCP nothing)
    assert stock - trimmed >= 30, (stock, trimmed)  # the ignore packet is gone


def test_no_cbc_cipher_is_ever_negotiated() -> None:
    """The empty ignores only protect CBC modes, which neither side of the bastion offers."""
    for algs in (listen.ENCRYPTION_ALGS, upstream.UPSTREAM_CIPHERS):
        assert algs and not any("cbc" in alg.lower() for alg in algs), algs


def test_upstream_offers_modern_algorithms_only() -> None:
    """The bastion's hop to targets prefers AES-GCM and never offers SHA-1 or MD5 MACs."""
    assert upstream.UPSTREAM_CIPHERS[0].startswith("aes128-gcm")
    assert upstream.UPSTREAM_MACS
    for mac in upstream.UPSTREAM_MACS:
        assert "etm" in mac and "sha1" not in mac and "md5" not in mac, mac
