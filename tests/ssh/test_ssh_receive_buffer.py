"""The bastion's receive buffer for asyncssh's packet parser, and the malloc settings: same
answers as ``bytes``, each byte copied at most once, no page faults per relayed chunk."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import tracemalloc

import asyncssh
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.ssh import wire
from bastion.ssh.wire import ReceiveBuffer

# -- the same answers as bytes, for every operation asyncssh's parser uses ----------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.binary(max_size=64)),
        st.tuples(st.just("rest"), st.integers(-80, 80)),
        st.tuples(st.just("head"), st.integers(-80, 80)),
        st.tuples(st.just("range"), st.integers(-80, 80), st.integers(-80, 80)),
        st.tuples(st.just("find"), st.binary(min_size=1, max_size=2), st.integers(0, 80)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(start=st.binary(max_size=64), ops=_ops)
def test_answers_like_bytes(start: bytes, ops: list[tuple[object, ...]]) -> None:
    ref: bytes = start
    buf = ReceiveBuffer(start)
    for op in ops:
        kind = op[0]
        if kind == "add":
            ref, buf = ref + op[1], buf + op[1]  # type: ignore[operator]
        elif kind == "rest":
            ref, buf = ref[op[1] :], buf[op[1] :]  # type: ignore[misc]
        elif kind == "head":
            assert buf[: op[1]] == ref[: op[1]]  # type: ignore[misc]
        elif kind == "range":
            assert buf[op[1] : op[2]] == ref[op[1] : op[2]]  # type: ignore[misc]
        else:
            assert buf.find(op[1], 0, op[2]) == ref.find(op[1], 0, op[2])  # type: ignore[arg-type]
        assert len(buf) == len(ref) and bool(buf) == bool(ref) and bytes(buf) == ref


def test_rejects_what_the_parser_never_does() -> None:
    with pytest.raises(TypeError):
        ReceiveBuffer(b"abc")[1]  # type: ignore[index]
    with pytest.raises(TypeError):
        ReceiveBuffer(b"abc")[::2]


# -- the point of it: taking packets off the front copies nothing ------------------------------

READ = 256 * 1024  # asyncio's read size
PACKET = 32 * 1024 + 36  # a 32 KiB data packet with its header and tag


def _take_packets(buf: bytes | ReceiveBuffer) -> int:
    """asyncssh's parsing steps (connection.py _recv_pkthdr/_recv_packet) over one read; returns
    the bytes allocated on the way beyond the packets themselves."""
    tracemalloc.start()
    try:
        while len(buf) >= PACKET:
            header = buf[:16]
            buf = buf[16:]
            rest = buf[: PACKET - 16]
            buf = buf[PACKET - 16 :]
            del header, rest
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_taking_packets_off_the_front_does_not_copy_the_rest() -> None:
    data = os.urandom(READ)
    stock = _take_packets(data)
    ours = _take_packets(ReceiveBuffer(data))
    assert stock > READ // 2, stock  # bytes: every packet copies what follows it
    assert ours < 2 * PACKET, ours  # only the packet being parsed


# -- on a real connection -----------------------------------------------------------------------


class _Sink(asyncssh.SSHServerSession[bytes]):
    def __init__(self) -> None:
        self.received = bytearray()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def shell_requested(self) -> bool:
        return True

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.received += data

    def eof_received(self) -> bool:
        self.chan.write(bytes(self.received))  # echo it all back, then close
        self.chan.exit(0)
        return False


_server_conns: list[asyncssh.SSHServerConnection] = []


class _Server(asyncssh.SSHServer):
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        wire.tune(conn)
        _server_conns.append(conn)

    def begin_auth(self, username: str) -> bool:
        return False

    def session_requested(self) -> _Sink:
        return _Sink()


@pytest.mark.parametrize("cipher", ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"])
async def test_bulk_both_ways_through_tuned_connections(cipher: str) -> None:
    """8 MiB of random data in odd-sized writes to a tuned server and back to a tuned client
    (large reads parsed from a ReceiveBuffer, small ones from bytes, AES-GCM with its key
    object kept): every byte arrives in order."""
    server = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        server_factory=_Server, encoding=None, max_pktsize=256 * 1024,
    )  # fmt: skip
    port = server.sockets[0].getsockname()[1]
    payload = os.urandom(8 * 1024 * 1024)
    try:
        async with asyncssh.connect(
            "127.0.0.1", port, known_hosts=None, encryption_algs=[cipher], config=[],
            agent_path=None, username="x",
        ) as conn:  # fmt: skip
            assert wire.use_receive_buffer(conn)
            proc = await conn.create_process(encoding=None)
            offset, size = 0, 1
            while offset < len(payload):
                proc.stdin.write(payload[offset : offset + size])
                offset, size = offset + size, size * 3 % 70001 + 1
            proc.stdin.write_eof()
            echoed = await asyncio.wait_for(proc.stdout.read(), 60)
            assert echoed == payload
        assert getattr(_server_conns.pop(), "_bastion_receive_buffer", False)
    finally:
        server.close()
        await server.wait_closed()


class _FakeConnection:
    """The two things the hook touches: ``_inpbuf`` and ``data_received``."""

    def __init__(self) -> None:
        self._inpbuf: bytes | ReceiveBuffer = b""
        self.seen: list[type] = []

    def data_received(self, data: bytes, datatype: object = None) -> None:
        self._inpbuf = self._inpbuf + data
        self.seen.append(type(self._inpbuf))
        self._inpbuf = self._inpbuf[len(self._inpbuf) :]  # all parsed


def test_large_reads_use_the_receive_buffer_and_small_ones_bytes() -> None:
    conn = _FakeConnection()
    assert wire.use_receive_buffer(conn)  # type: ignore[arg-type]
    assert wire.use_receive_buffer(conn)  # type: ignore[arg-type]  # idempotent
    conn.data_received(b"k" * 16)
    conn.data_received(os.urandom(wire.LARGE_READ))
    conn.data_received(b"k" * 16)
    assert conn.seen == [bytes, ReceiveBuffer, bytes]
    assert conn._inpbuf == b""  # a fully parsed ReceiveBuffer hands back plain bytes


def test_an_unknown_asyncssh_layout_is_left_alone() -> None:
    class Other:
        _inpbuf = bytearray()  # not what asyncssh 2.24 keeps: do not touch it

    other = Other()
    assert wire.use_receive_buffer(other) is False  # type: ignore[arg-type]
    assert isinstance(other._inpbuf, bytearray)


# -- malloc: socket-sized buffers stay on the heap ----------------------------------------------

_FAULTS = textwrap.dedent(
    """
    import resource, sys
    from bastion.memory import tune_malloc
    if sys.argv[1] == "tuned":
        assert tune_malloc()
    import socket
    a, b = socket.socketpair()
    chunk = b"x" * 32768
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    before = faults()
    for _ in range(2000):  # what asyncio does per read: recv(256 KiB) that returns 32 KiB
        a.sendall(chunk)
        data = b.recv(262144)
        assert len(data) == 32768
        del data
    print(faults() - before)
    """
)


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
        timeout=60,
    )  # fmt: skip
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_malloc_stops_a_page_fault_per_received_page() -> None:
    stock, tuned = _faults("stock"), _faults("tuned")
    assert stock > 2000 * 4, stock  # every 32 KiB read faults in its pages afresh
    assert tuned < 500, tuned


# -- process-wide per-packet trims ----------------------------------------------------------------


def test_packet_trims_are_active_for_this_asyncssh() -> None:
    """Fails on an asyncssh upgrade: re-read the patched internals, then extend
    ``wire.TRIMMED_ASYNCSSH``."""
    assert wire.install_packet_trims(), asyncssh.__version__


def test_gcm_keeps_its_key_object_and_encrypts_as_before() -> None:
    from asyncssh.crypto.cipher import GCMCipher
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    assert wire.install_packet_trims()
    key, iv = os.urandom(16), os.urandom(12)
    sender = GCMCipher("aes128-gcm", key, iv)
    receiver = GCMCipher("aes128-gcm", key, iv)
    reference = AESGCM(key)
    counter = int.from_bytes(iv[4:], "big")
    objects = set()
    for n in range(3):
        header, data = os.urandom(4), os.urandom(100 + n)
        packet, mac = sender.encrypt_and_sign(header, data)
        nonce = iv[:4] + (counter + n).to_bytes(8, "big")
        assert packet + mac == header + reference.encrypt(nonce, data, header)
        assert receiver.verify_and_decrypt(header, packet[4:], mac) == data
        objects.add(id(sender.__dict__["_bastion_aead"]))
    assert len(objects) == 1  # one key object for the cipher's life
    assert receiver.verify_and_decrypt(b"hdr!", os.urandom(20), os.urandom(16)) is None


def test_packet_log_is_formatted_only_when_it_would_be_printed() -> None:
    from asyncssh.logging import SSHLogger
    from asyncssh.packet import SSHPacketLogger

    assert wire.install_packet_trims()

    class _Sized(bytes):
        measured = 0

        def __len__(self) -> int:
            _Sized.measured += 1
            return super().__len__()

    class _Handler(SSHPacketLogger):
        logger = asyncssh.logging.logger

    level = SSHLogger._debug_level
    try:
        asyncssh.set_debug_level(1)
        _Handler().log_sent_packet(94, None, _Sized(b"data"))
        assert _Sized.measured == 0
        asyncssh.set_debug_level(3)
        _Handler().log_sent_packet(94, None, _Sized(b"data"))
        assert _Sized.measured == 1
    finally:
        asyncssh.set_debug_level(level)


def test_chacha_packets_match_the_stock_construction() -> None:
    """The trimmed chacha20-poly1305 gives asyncssh's own answers (its module functions, which
    are not patched), and refuses a packet whose tag or body was changed."""
    from asyncssh.crypto import chacha

    assert wire.install_packet_trims()
    key = os.urandom(64)
    cipher = chacha.ChachaCipher(key)
    main_key, length_key = key[:32], key[32:]
    for size in (0, 16, 48, 32768, 100_000):
        header, data, nonce = os.urandom(4), os.urandom(size), os.urandom(8)
        packet, tag = cipher.encrypt_and_sign(header, data, nonce)
        stock_header = chacha.chacha20(length_key, header, nonce, 0)
        stock_data = chacha.chacha20(main_key, data, nonce, 1)
        assert packet == stock_header + stock_data
        assert tag == chacha.poly1305(main_key, packet, nonce)
        assert cipher.verify_and_decrypt(packet[:4], packet[4:], nonce, tag) == data
        assert cipher.verify_and_decrypt(packet[:4], packet[4:], nonce, bytes(16)) is None
        if size:
            flipped = packet[4:-1] + bytes([packet[-1] ^ 1])
            assert cipher.verify_and_decrypt(packet[:4], flipped, nonce, tag) is None
