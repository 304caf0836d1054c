"""Everything the bastion must refuse, each with a readable message and a log line."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.bastion import (
    TEST_LIMITS,
    RunningBastion,
    start_bastion,
    target_block,
    write_config,
)

from bastion.app import Runtime
from bastion.config import Config
from bastion.hooks import AllowAllGate
from bastion.testing.certs import Agent, CertificateAuthority, keygen
from bastion.testing.sshd import SshdTarget, free_port


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    directory = tmp_path_factory.mktemp("refusals")
    other_key = keygen(directory / "other_host_key")
    wrong_pin = Path(f"{other_key}.pub").read_text().strip()
    targets = (
        target_block(sshd, "web-01")
        + target_block(sshd, "web-badkey", host_key=wrong_pin)
        + target_block(sshd, "web-down", port=free_port(), connect_timeout='"3s"')
        + target_block(sshd, "db-01")
    )
    access = (
        f'[[access]]\nprincipals = ["agents"]\ntargets = ["web-*"]\nlogins = ["{sshd.login}"]\n'
        '[[access]]\nprincipals = ["dba"]\ntargets = ["db-*"]\nlogins = ["postgres"]\n'
    )
    config = write_config(directory, ca, targets, access=access)

    def runtime(cfg: Config) -> Runtime:
        return Runtime(config=cfg, gate=AllowAllGate(), limits=TEST_LIMITS)

    running = start_bastion(config, runtime)
    yield running
    running.stop()


def refused(result: subprocess.CompletedProcess[bytes], message: str) -> None:
    assert result.returncode == 255, (result.returncode, result.stdout, result.stderr)
    assert message.encode() in result.stderr, result.stderr
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("sign", "message"),
    [
        ({"validity": "-2h:-1h"}, "certificate has expired"),
        ({"validity": "+1h:+2h"}, "certificate is not yet valid"),
        ({"validity": "-5m:+48h"}, "certificate validity exceeds the maximum"),
        ({"principals": "nobody"}, "does not exist or is not granted"),
        ({"options": ("source-address=10.9.8.7/32",)}, "are not allowed by this certificate"),
    ],
    ids=["expired", "not-yet-valid", "too-long", "wrong-principal", "source-addr"],
)
def test_bad_certificates_are_refused(
    guarded: RunningBastion,
    make_agent: Callable[..., Agent],
    caplog: pytest.LogCaptureFixture,
    sign: dict[str, object],
    message: str,
) -> None:
    """Each kind of unacceptable certificate is refused with its reason shown and logged."""
    caplog.set_level(logging.INFO)
    result = guarded.ssh(make_agent(**sign), "web-01", "echo should-not-run")
    refused(result, message)
    assert any(
        r.getMessage() == "auth.refused" and message in r.ctx["reason"]  # type: ignore[attr-defined]
        for r in caplog.records
    )


async def test_host_certificate_is_refused(
    guarded: RunningBastion, make_agent: Callable[..., Agent]
) -> None:
    """A host certificate offered for user authentication is refused (OpenSSH clients would not
    even send one, so a client that does is driven with asyncssh)."""
    import asyncssh

    hostish = make_agent(host=True)
    banners: list[str] = []

    class Client(asyncssh.SSHClient):
        def auth_banner_received(self, msg: str, lang: str) -> None:
            banners.append(msg)

    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            "127.0.0.1",
            guarded.port,
            username="web-01",
            client_factory=Client,
            client_keys=[
                (
                    asyncssh.read_private_key(str(hostish.key)),
                    asyncssh.read_certificate(str(hostish.cert)),
                )
            ],
            known_hosts=str(guarded.known_hosts),
            config=[],
            agent_path=None,
        )
    assert any("a host certificate cannot be used as a user certificate" in b for b in banners)


def test_certificate_from_another_ca_is_refused(
    guarded: RunningBastion, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """A certificate signed by an untrusted CA cannot log in."""
    rogue = CertificateAuthority.create(tmp_path, "rogue_ca")
    refused(guarded.ssh(make_agent(rogue), "web-01", "true"), "not signed by a trusted user CA")


def test_plain_key_is_refused(guarded: RunningBastion, tmp_path: Path) -> None:
    """A plain public key (no certificate) cannot log in, even if it is the agent's key."""
    plain = Agent(keygen(tmp_path / "plain"), None)
    refused(guarded.ssh(plain, "web-01", "true"), "plain public keys are not accepted")


def test_passwords_are_not_offered(guarded: RunningBastion, agent: Agent) -> None:
    """The bastion offers only publickey authentication."""
    result = guarded.ssh(agent, "web-01", "true", "-o", "PreferredAuthentications=password")
    assert result.returncode == 255
    assert b"Permission denied (publickey)" in result.stderr


def test_slightly_early_certificate_is_accepted_within_skew(
    guarded: RunningBastion, make_agent: Callable[..., Agent]
) -> None:
    """A certificate whose validity starts 20 s in the future is accepted (clock-skew allowance)."""
    result = guarded.ssh(make_agent(validity="+20s:+10m"), "web-01", "echo ok")
    assert result.stdout == b"ok\n", result.stderr


def test_force_command_replaces_requested_command(
    guarded: RunningBastion, make_agent: Callable[..., Agent]
) -> None:
    """A certificate force-command runs instead of what the agent asked for."""
    agent = make_agent(options=("force-command=echo forced",))
    result = guarded.ssh(agent, "web-01", "echo asked")
    assert result.stdout == b"forced\n", result.stderr


def test_unknown_target_and_ungranted_target_look_the_same(
    guarded: RunningBastion, agent: Agent
) -> None:
    """An unknown target and a target not granted give one message, so names cannot be probed."""
    unknown = guarded.ssh(agent, "web-99", "true")
    ungranted = guarded.ssh(agent, "db-01", "true")
    refused(unknown, "target 'web-99' does not exist or is not granted")
    refused(ungranted, "target 'db-01' does not exist or is not granted")


def test_login_not_granted(guarded: RunningBastion, agent: Agent) -> None:
    """A login the access rules do not grant for this target is refused."""
    refused(guarded.ssh(agent, "root@web-01", "true"), "for login 'root'")


def test_malformed_user_name(guarded: RunningBastion, agent: Agent) -> None:
    """A user name that is not TARGET or LOGIN@TARGET is refused with the expected form."""
    refused(
        guarded.ssh(agent, "a/b@web-01", "true"), "the user name must be TARGET or LOGIN@TARGET"
    )


def test_pinned_host_key_mismatch(guarded: RunningBastion, agent: Agent) -> None:
    """A target whose host key differs from the pinned one is never used."""
    refused(guarded.ssh(agent, "web-badkey", "echo leaked"), "does not match the pinned key")


def test_unreachable_target(guarded: RunningBastion, agent: Agent) -> None:
    """A target that does not answer gives one readable line, not a hang or a traceback."""
    refused(guarded.ssh(agent, "web-down", "true"), "target 'web-down' is unreachable")


def test_local_forwarding_refused(guarded: RunningBastion, agent: Agent) -> None:
    """``ssh -W`` (direct-tcpip) is refused with the bastion's reason."""
    result = guarded.ssh(agent, "web-01", None, "-W", "127.0.0.1:22")
    refused(result, "port forwarding is not allowed through this bastion")


def test_remote_forwarding_refused(guarded: RunningBastion, agent: Agent) -> None:
    """``ssh -R`` is refused."""
    result = guarded.ssh(
        agent, "web-01", "true", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"
    )
    refused(result, "remote port forwarding failed")


def test_agent_and_x11_forwarding_refused(
    guarded: RunningBastion, agent: Agent, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Agent and X11 forwarding requests are refused with a notice; the command still runs."""
    caplog.set_level(logging.INFO)
    sock = tmp_path / "agent.sock"
    ssh_agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"])
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock), DISPLAY="127.0.0.1:99")
        args = [*guarded.ssh_args(agent, "web-01", "-A", "-X"), "echo ran"]
        result = subprocess.run(args, capture_output=True, env=env, timeout=30)
    finally:
        ssh_agent.kill()
        ssh_agent.wait()
    assert result.stdout == b"ran\n"
    assert b"agent forwarding is not allowed through this bastion" in result.stderr
    assert b"X11 forwarding is not allowed through this bastion" in result.stderr
    whats = {r.ctx["what"] for r in caplog.records if r.getMessage() == "refused"}  # type: ignore[attr-defined]
    assert {"agent-forwarding", "x11-forwarding"} <= whats


def test_sftp_subsystem_refused(guarded: RunningBastion, agent: Agent) -> None:
    """sftp (and so scp) is refused: it would bypass command inspection."""
    args = [
        "sftp",
        "-F",
        "/dev/null",
        "-P",
        str(guarded.port),
        "-i",
        str(agent.key),
        "-o",
        f"CertificateFile={agent.cert}",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={guarded.known_hosts}",
        "-o",
        "BatchMode=yes",
        "-b",
        "-",
        "web-01@127.0.0.1",
    ]
    result = subprocess.run(args, input=b"ls\n", capture_output=True, timeout=30)
    assert result.returncode != 0
    assert b"the 'sftp' subsystem is not allowed" in result.stderr
