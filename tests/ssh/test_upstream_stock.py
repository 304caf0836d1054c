"""Upstream connections that respect a stock target sshd (MaxStartups 10:30:100, MaxSessions 10):
a burst of agents loses no command, channels past MaxSessions get another connection, a
connection dropped before authentication is retried, and a target that is down still fails at
once with its one-line message."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncssh
import pytest
from support.bastion import target_block, write_config
from support.bastion_process import ServeProcess

from bastion.config import load_config
from bastion.ssh.upstream import UpstreamConnector, UpstreamError
from bastion.testing.certs import CertificateAuthority
from bastion.testing.sshd import SshdTarget, free_port, start_sshd

AGENTS = 100
COMMANDS = 5
SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"
POLICY = f'[policy]\nfile = "{SHIPPED_POLICY}"\n'


@pytest.fixture(scope="module")
def stock_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdTarget]:
    target = start_sshd(tmp_path_factory.mktemp("stock-sshd"), stock=True)
    yield target
    target.stop()


def _identities(ca: CertificateAuthority, count: int) -> list[list[asyncssh.SSHKey]]:
    """``count`` agents, each with its own key and a certificate for principal ``agents``."""
    signer = asyncssh.read_private_key(str(ca.key))
    out = []
    for n in range(count):
        key = asyncssh.generate_private_key("ssh-ed25519")
        cert = signer.generate_user_certificate(
            key, f"burst-agent-{n}", principals=["agents"], valid_after="-5m", valid_before="+1h"
        )
        out.append([(key, cert)])
    return out  # type: ignore[return-value]


def _commands(state: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(state / "bastion.db")
    try:
        rows = db.execute(
            "SELECT json_extract(fields, '$.command'), json_extract(fields, '$.decision')"
            " FROM audit_log WHERE kind = 'command'"
        ).fetchall()
    finally:
        db.close()
    return [(str(c), str(d)) for c, d in rows]


def test_burst_of_agents_against_stock_sshd(
    tmp_path: Path, stock_sshd: SshdTarget, ca: CertificateAuthority
) -> None:
    """100 agents x 5 commands at once through `bastion serve` (its default workers) against a
    target with sshd's stock start-up limits: every command runs and is audited."""
    config = write_config(
        tmp_path, ca, target_block(stock_sshd),
        extra=POLICY + "[limits]\nmax_connections = 1024\n",
    )  # fmt: skip
    served = ServeProcess.start(config)
    host_pub = (tmp_path / "ssh_host_ed25519_key.pub").read_text().strip()
    known = tmp_path / "known_hosts_bastion"
    known.write_text(f"[127.0.0.1]:{served.port} {host_pub}\n")
    identities = _identities(ca, AGENTS)

    async def agent(n: int) -> list[tuple[int | None, str]]:
        async with asyncssh.connect(
            "127.0.0.1", served.port, username="web-01", client_keys=identities[n],
            known_hosts=str(known), config=[], agent_path=None, connect_timeout=120,
        ) as conn:  # fmt: skip
            runs = [conn.run(f"echo burst-{n}-{c}", timeout=120) for c in range(COMMANDS)]
            done = await asyncio.gather(*runs)
            return [(r.exit_status, str(r.stdout).strip()) for r in done]

    async def burst() -> list[list[tuple[int | None, str]]]:
        return await asyncio.gather(*(agent(n) for n in range(AGENTS)))

    try:
        results = asyncio.run(burst())
    finally:
        served.stop()
    failures = [
        (n, c, r) for n, agent_results in enumerate(results)
        for c, r in enumerate(agent_results) if r != (0, f"burst-{n}-{c}")
    ]  # fmt: skip
    assert failures == []
    audited = _commands(tmp_path / "state")
    wanted = {f"echo burst-{n}-{c}" for n in range(AGENTS) for c in range(COMMANDS)}
    assert {c for c, d in audited if d == "allow"} >= wanted
    assert len([c for c, _ in audited if c in wanted]) == AGENTS * COMMANDS


def test_channels_past_max_sessions_get_another_connection(
    tmp_path: Path, stock_sshd: SshdTarget, ca: CertificateAuthority
) -> None:
    """One agent connection with 25 channels open at once against MaxSessions 10: all run."""
    config = write_config(
        tmp_path, ca, target_block(stock_sshd), workers=1,
        extra=POLICY + "[limits]\nmax_channels_per_connection = 30\n",
    )  # fmt: skip
    served = ServeProcess.start(config)
    host_pub = (tmp_path / "ssh_host_ed25519_key.pub").read_text().strip()
    known = tmp_path / "known_hosts_bastion"
    known.write_text(f"[127.0.0.1]:{served.port} {host_pub}\n")

    async def many() -> list[tuple[int | None, str]]:
        async with asyncssh.connect(
            "127.0.0.1", served.port, username="web-01", client_keys=_identities(ca, 1)[0],
            known_hosts=str(known), config=[], agent_path=None,
        ) as conn:  # fmt: skip
            runs = [conn.run(f"sleep 1; echo chan-{i}", timeout=60) for i in range(25)]
            return [(r.exit_status, str(r.stdout).strip()) for r in await asyncio.gather(*runs)]

    try:
        results = asyncio.run(many())
    finally:
        served.stop()
    assert results == [(0, f"chan-{i}") for i in range(25)]


class _DropFirst:
    """A loopback TCP server that accepts and at once resets the first ``drops`` connections
    (what sshd does past MaxStartups), then forwards the rest to ``port``."""

    def __init__(self, port: int, drops: int) -> None:
        self.upstream = port
        self.drops = drops
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drops:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                client.close()  # RST
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.sock.close()


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _target(tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, port: int,
            timeout: str = "10s"):  # type: ignore[no-untyped-def]
    config = load_config(write_config(
        tmp_path, ca, target_block(sshd, port=port, connect_timeout=f'"{timeout}"')
    ))  # fmt: skip
    return config.targets["web-01"]


def test_a_connection_dropped_before_authentication_is_retried(
    tmp_path: Path, stock_sshd: SshdTarget, ca: CertificateAuthority
) -> None:
    proxy = _DropFirst(stock_sshd.port, drops=3)
    target = _target(tmp_path, ca, stock_sshd, proxy.port)
    connector = UpstreamConnector()

    async def go() -> str:
        conn = await connector.connect(target, stock_sshd.login)
        async with conn:
            return str((await conn.run("echo through", check=True)).stdout).strip()

    try:
        assert asyncio.run(go()) == "through"
    finally:
        proxy.close()
    assert connector.retries == 3 and proxy.accepted == 4


def test_a_target_that_always_drops_fails_at_its_timeout(
    tmp_path: Path, stock_sshd: SshdTarget, ca: CertificateAuthority
) -> None:
    proxy = _DropFirst(stock_sshd.port, drops=10**9)
    target = _target(tmp_path, ca, stock_sshd, proxy.port, timeout="1s")
    began = time.monotonic()
    try:
        with pytest.raises(UpstreamError, match="dropped before authentication"):
            asyncio.run(UpstreamConnector().connect(target, stock_sshd.login))
    finally:
        proxy.close()
    assert time.monotonic() - began < 3
    assert proxy.accepted > 3


def test_a_target_that_is_down_fails_at_once(
    tmp_path: Path, stock_sshd: SshdTarget, ca: CertificateAuthority
) -> None:
    target = _target(tmp_path, ca, stock_sshd, free_port())
    began = time.monotonic()
    with pytest.raises(UpstreamError, match="is unreachable"):
        asyncio.run(UpstreamConnector().connect(target, stock_sshd.login))
    assert time.monotonic() - began < 1


def test_handshakes_to_one_target_are_bounded(
    tmp_path: Path, stock_sshd: SshdTarget, ca: CertificateAuthority
) -> None:
    """With max_handshakes = 4 split over 2 workers, at most 2 handshakes are in flight."""
    target = replace(_target(tmp_path, ca, stock_sshd, stock_sshd.port), max_handshakes=4)
    connector = UpstreamConnector(shares=2)
    in_flight = peak = 0
    original = connector._connect_once

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(*args, **kwargs)
        finally:
            in_flight -= 1

    connector._connect_once = counting  # type: ignore[method-assign]

    async def go() -> None:
        conns = await asyncio.gather(*(connector.connect(target, stock_sshd.login)
                                       for _ in range(8)))
        for c in conns:
            c.close()

    asyncio.run(go())
    assert peak == 2
