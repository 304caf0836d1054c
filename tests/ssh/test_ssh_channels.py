"""Finer channel behaviour through the bastion, driven with an asyncssh client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest
from support.bastion import RunningBastion

from bastion.testing.certs import Agent


async def connect(bastion: RunningBastion, agent: Agent, user: str = "web-01"):
    key = asyncssh.read_private_key(str(agent.key))
    cert = asyncssh.read_certificate(str(agent.cert))
    return await asyncssh.connect(
        "127.0.0.1",
        bastion.port,
        username=user,
        client_keys=[(key, cert)],
        known_hosts=str(bastion.known_hosts),
        config=[],
        agent_path=None,
    )


async def test_signal_reaches_target_and_exit_signal_comes_back(
    bastion: RunningBastion, agent: Agent
) -> None:
    """A signal the agent sends is delivered on the target and the exit-signal is passed back."""
    async with await connect(bastion, agent) as conn:
        proc = await conn.create_process("echo started; exec sleep 30", encoding=None)
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"started\n"
        proc.send_signal("TERM")
        result = await asyncio.wait_for(proc.wait(), 10)
    assert result.exit_signal is not None
    assert result.exit_signal[0] == "TERM"


async def test_env_allowlist(bastion: RunningBastion, agent: Agent) -> None:
    """Only LANG, LC_* and TERM from the agent's environment reach the target."""
    async with await connect(bastion, agent) as conn:
        result = await conn.run(
            'echo "$LANG|$LC_ALL|$SNEAKY|$LD_PRELOAD"',
            env={"LANG": "C.UTF-8", "LC_ALL": "C", "SNEAKY": "x", "LD_PRELOAD": "/tmp/evil.so"},
        )
    assert result.stdout == "C.UTF-8|C||\n"


async def test_pty_shell_with_window_change(bastion: RunningBastion, agent: Agent) -> None:
    """A PTY shell gets the agent's terminal size, and a window change reaches the target."""
    async with await connect(bastion, agent) as conn:
        proc = await conn.create_process(term_type="xterm", term_size=(80, 24), encoding=None)

        async def ask_size() -> bytes:
            # The marker only appears once the shell has run the line (the echo shows $((...))).
            proc.stdin.write(b"stty size; echo END-$((40+2))\n")
            data = b""
            while b"END-42" not in data:
                data += await asyncio.wait_for(proc.stdout.read(4096), 10)
            return data

        assert b"24 80" in await ask_size()
        proc.change_terminal_size(132, 43)
        await asyncio.sleep(0.2)
        assert b"43 132" in await ask_size()
        proc.stdin.write(b"exit 5\n")
        result = await asyncio.wait_for(proc.wait(), 10)
    assert result.exit_status == 5


async def test_slow_agent_does_not_make_bastion_buffer(
    bastion: RunningBastion, agent: Agent, tmp_path: Path
) -> None:
    """While the agent stops reading, the bastion's buffered output stays bounded."""
    async with await connect(bastion, agent) as conn:
        chan, _ = await conn.create_session(
            asyncssh.SSHClientSession, "head -c 200000000 /dev/zero", encoding=None
        )
        chan.pause_reading()
        await asyncio.sleep(2.0)

        def buffered() -> int:
            return sum(
                a.chan.get_write_buffer_size()
                for s in bastion.runtime.servers
                for a in s.channels
                if a.chan is not None
            )

        held = bastion.call(buffered)
        chan.close()
    assert held < 16 * 1024 * 1024, f"bastion buffered {held} bytes for a paused agent"


async def test_local_port_forwarding_is_refused(bastion: RunningBastion, agent: Agent) -> None:
    """A direct-tcpip channel is refused with a reason naming the policy."""
    async with await connect(bastion, agent) as conn:
        with pytest.raises(asyncssh.ChannelOpenError) as info:
            await conn.open_connection("127.0.0.1", 22)
    assert "port forwarding is not allowed" in info.value.reason
