"""Certificate extensions and signature algorithms, as OpenSSH honours them (issue 20, 1-2).

Certificates are made by the real ``ssh-keygen`` (``-O clear``, ``-O permit-pty``,
``-t ssh-rsa``) and used by the real ``ssh`` client; the bastion relays to the real sshd.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncssh.packet import Byte, String, UInt32
from support.bastion import (
    RunningBastion,
    bare_runtime,
    start_bastion,
    target_block,
    write_config,
)

from bastion.errors import ConfigError
from bastion.model import Identity
from bastion.ssh.certcheck import (
    SECURE_SIGNATURE_ALGORITHMS,
    SK_USER_PRESENCE,
    SK_USER_VERIFICATION,
    ca_signature_algorithm,
    check_sk_flags,
    parse_signature_algorithms,
)
from bastion.testing.certs import Agent, CertificateAuthority, keygen
from bastion.testing.sshd import SshdTarget


def _agent(directory: Path, ca: CertificateAuthority, *options: str, kind: str = "ed25519",
           sig_alg: str | None = None, name: str = "agent") -> Agent:
    """A key and a certificate signed by ``ca`` with exactly ``options`` (after -O clear)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = keygen(directory / name, kind, 2048 if kind == "rsa" else None)
    cmd = ["ssh-keygen", "-q", "-s", str(ca.key), "-I", f"{name}@test", "-n", "agents",
           "-V", "-5m:+1h", "-O", "clear"]
    for opt in options:
        cmd += ["-O", opt]
    if sig_alg is not None:
        cmd += ["-t", sig_alg]
    cmd.append(f"{key}.pub")
    subprocess.run(cmd, check=True, capture_output=True)
    return Agent(key, Path(f"{key}-cert.pub"))


@pytest.fixture(scope="module")
def door(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    directory = tmp_path_factory.mktemp("door")
    running = start_bastion(write_config(directory, ca, target_block(sshd)), bare_runtime)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def rsa_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    directory = tmp_path_factory.mktemp("rsa-ca")
    return CertificateAuthority(keygen(directory / "rsa_ca", "rsa", 3072))


@pytest.fixture(scope="module")
def rsa_door(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, rsa_ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    directory = tmp_path_factory.mktemp("rsa-door")
    running = start_bastion(write_config(directory, rsa_ca, target_block(sshd)),
                            bare_runtime)
    yield running
    running.stop()


# -- permit-pty ----------------------------------------------------------------------------
def test_no_permit_pty_refuses_the_pty_request(
    door: RunningBastion, tmp_path: Path, ca: CertificateAuthority
) -> None:
    """As sshd does: the pty-req fails (with one line saying why); OpenSSH's client, asked
    for a terminal with -tt, then gives up on the channel, so nothing runs."""
    agent = _agent(tmp_path, ca)  # -O clear: no extensions at all
    marker = tmp_path / "ran"
    result = door.ssh(agent, "web-01", f"touch {marker}", "-tt")
    err = result.stderr.decode()
    assert "bastion: your certificate does not permit a terminal (no permit-pty)" in err, err
    assert "PTY allocation request failed" in err, err
    assert result.returncode == 255
    assert not marker.exists()
    shell = door.ssh(agent, "web-01", None, "-tt", input=b"tty\nexit\n")
    assert b"no permit-pty" in shell.stderr, shell.stderr
    assert b"/dev/pts/" not in shell.stdout


def test_no_permit_pty_exec_without_pty_keeps_working(
    door: RunningBastion, tmp_path: Path, ca: CertificateAuthority
) -> None:
    agent = _agent(tmp_path, ca)
    result = door.ssh(agent, "web-01", "tty; echo ran")
    assert result.stdout == b"not a tty\nran\n", result.stderr
    assert b"permit-pty" not in result.stderr


def test_permit_pty_gets_a_terminal(
    door: RunningBastion, tmp_path: Path, ca: CertificateAuthority
) -> None:
    agent = _agent(tmp_path, ca, "permit-pty")
    result = door.ssh(agent, "web-01", "tty", "-tt")
    assert "/dev/pts/" in result.stdout.decode(), (result.stdout, result.stderr)
    assert b"permit-pty" not in result.stderr


# -- forwarding extensions -----------------------------------------------------------------
def test_forwarding_refusal_names_the_missing_extension(
    door: RunningBastion, tmp_path: Path, ca: CertificateAuthority
) -> None:
    agent = _agent(tmp_path, ca, "permit-pty")
    sock = tmp_path / "agent.sock"
    ssh_agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock), DISPLAY="127.0.0.1:99")
        args = [*door.ssh_args(agent, "web-01", "-A", "-X"), "echo ran"]
        result = subprocess.run(args, capture_output=True, env=env, timeout=30)
    finally:
        ssh_agent.kill()
        ssh_agent.wait()
    err = result.stderr.decode()
    assert "does not permit agent forwarding (no permit-agent-forwarding)" in err, err
    assert "does not permit X11 forwarding (no permit-X11-forwarding)" in err, err
    assert result.stdout == b"ran\n"
    jump = door.ssh(agent, "web-01", None, "-W", "127.0.0.1:22", input=b"", timeout=30)
    assert jump.returncode != 0
    assert b"no permit-port-forwarding" in jump.stderr, jump.stderr


def test_extension_check_comes_before_the_bastion_switch(
    door: RunningBastion, tmp_path: Path, ca: CertificateAuthority
) -> None:
    """Turning a bastion forwarding switch on cannot let a certificate without the extension
    forward: the extension is checked on its own, first."""
    from bastion.ssh import server as srv

    agent = _agent(tmp_path, ca, "permit-pty")
    saved = dict(srv.BASTION_FORWARDING)
    srv.BASTION_FORWARDING.update({"port": True, "agent": True, "X11": True})
    try:
        result = door.ssh(agent, "web-01", None, "-W", "127.0.0.1:22", input=b"", timeout=30)
    finally:
        srv.BASTION_FORWARDING.update(saved)
    assert b"no permit-port-forwarding" in result.stderr, result.stderr


# -- verify-required -----------------------------------------------------------------------
def test_verify_required_on_a_non_fido_key_is_refused(
    door: RunningBastion, tmp_path: Path, ca: CertificateAuthority
) -> None:
    agent = _agent(tmp_path, ca, "permit-pty", "verify-required")
    result = door.ssh(agent, "web-01", "echo should-not-run")
    assert result.returncode == 255
    assert b"requires FIDO user verification (verify-required)" in result.stderr, result.stderr
    assert result.stdout == b""


def test_security_key_certificate_is_refused_clearly(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    """An sk-ssh-ed25519 certificate made by the real ssh-keygen (the public key is built by
    hand: there is no authenticator here) is refused by name, not as 'unusable'."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from bastion.ssh.certcheck import CertificateRefused, decode_certificate

    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    blob = String(b"sk-ssh-ed25519@openssh.com") + String(raw) + String(b"ssh:")
    pub = tmp_path / "sk.pub"
    pub.write_text(f"sk-ssh-ed25519@openssh.com {base64.b64encode(blob).decode()} sk\n")
    cert = ca.sign(pub, options=("verify-required",))
    alg, data = cert.read_text().split()[:2]
    with pytest.raises(CertificateRefused, match=r"security-key \(sk-\*\) certificates"):
        decode_certificate(alg.encode(), base64.b64decode(data))


def _sk_signature(flags: int) -> bytes:
    return String(b"sk-ssh-ed25519@openssh.com") + String(b"\0" * 64) + Byte(flags) + UInt32(7)


@pytest.mark.parametrize(
    ("flags", "extensions", "verify", "refused"),
    [
        (SK_USER_PRESENCE, frozenset(), False, None),
        (0, frozenset(), False, "not touched"),
        (0, frozenset({"no-touch-required"}), False, None),
        (SK_USER_PRESENCE, frozenset(), True, "requires user verification"),
        (SK_USER_PRESENCE | SK_USER_VERIFICATION, frozenset(), True, None),
    ],
)
def test_security_key_flags_are_checked_as_sshd_does(
    flags: int, extensions: frozenset[str], verify: bool, refused: str | None
) -> None:
    """sk-* signatures carry the authenticator's flags; presence is required unless the
    certificate says no-touch-required, verification when it says verify-required."""
    ident = Identity("k", 1, ("agents",), "ca", 0, 1, extensions=extensions,
                     verify_required=verify)
    reason = check_sk_flags(ident, b"sk-ssh-ed25519@openssh.com", _sk_signature(flags))
    assert (reason is None) if refused is None else (refused in (reason or ""))
    assert check_sk_flags(ident, b"sk-ssh-ed25519@openssh.com", _sk_signature(flags)[:-1])
    assert check_sk_flags(ident, b"ssh-ed25519", b"") is None


# -- SHA-1 RSA ------------------------------------------------------------------------------
def test_ca_signature_with_sha1_rsa_is_refused(
    rsa_door: RunningBastion, tmp_path: Path, rsa_ca: CertificateAuthority
) -> None:
    sha1 = _agent(tmp_path / "a", rsa_ca, "permit-pty", sig_alg="ssh-rsa")
    listing = subprocess.run(["ssh-keygen", "-Lf", str(sha1.cert)], capture_output=True,
                             text=True, check=True).stdout
    assert "(using ssh-rsa)" in listing  # really signed with SHA-1
    result = rsa_door.ssh(sha1, "web-01", "echo should-not-run")
    assert result.returncode == 255
    assert b"the CA signed this certificate with ssh-rsa (RSA with SHA-1)" in result.stderr
    sha2 = _agent(tmp_path / "b", rsa_ca, "permit-pty", sig_alg="rsa-sha2-512")
    ok = rsa_door.ssh(sha2, "web-01", "echo ran")
    assert ok.stdout == b"ran\n", ok.stderr


@pytest.fixture(scope="module")
def sha1_advertising_door(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority
) -> Iterator[RunningBastion]:
    """A bastion that (wrongly) advertises ssh-rsa in server-sig-algs, so that the real client
    will sign with SHA-1 when forced to: the userauth check must refuse it on its own, as it
    would a client that ignores the advertisement."""
    from bastion.ssh import listen

    directory = tmp_path_factory.mktemp("sha1-door")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(listen, "SIG_ALGS", [*listen.SIG_ALGS, "ssh-rsa"])
        running = start_bastion(write_config(directory, ca, target_block(sshd)), bare_runtime)
    yield running
    running.stop()


def test_userauth_signature_with_sha1_rsa_is_refused(
    sha1_advertising_door: RunningBastion, door: RunningBastion, tmp_path: Path,
    ca: CertificateAuthority
) -> None:
    agent = _agent(tmp_path, ca, "permit-pty", kind="rsa")
    sha1 = ("-o", "PubkeyAcceptedAlgorithms=ssh-rsa-cert-v01@openssh.com,ssh-rsa")
    forced = sha1_advertising_door.ssh(agent, "web-01", "echo should-not-run", *sha1)
    assert forced.returncode == 255, forced.stderr
    assert b"the client signed with ssh-rsa (RSA with SHA-1)" in forced.stderr, forced.stderr
    assert forced.stdout == b""
    # The shipped bastion does not advertise ssh-rsa: OpenSSH's client does not even try.
    shipped = door.ssh(agent, "web-01", "echo should-not-run", *sha1, "-v")
    assert shipped.returncode == 255
    assert b"no mutual signature algorithm" in shipped.stderr, shipped.stderr
    # The same RSA certificate with SHA-2 signatures (the client's default) logs in.
    ok = door.ssh(agent, "web-01", "echo ran")
    assert ok.stdout == b"ran\n", ok.stderr


def test_ca_signature_algorithm_is_read_exactly(
    tmp_path: Path, rsa_ca: CertificateAuthority
) -> None:
    import base64

    agent = _agent(tmp_path, rsa_ca, sig_alg="ssh-rsa")
    blob = base64.b64decode(agent.cert.read_text().split()[1])  # type: ignore[union-attr]
    ca_blob = base64.b64decode(rsa_ca.public_key.read_text().split()[1])
    assert ca_signature_algorithm(blob, ca_blob) == "ssh-rsa"
    assert ca_signature_algorithm(blob + b"\0", ca_blob) is None  # trailing bytes
    assert ca_signature_algorithm(blob[:-1], ca_blob) is None  # cut short
    assert ca_signature_algorithm(blob, ca_blob[:-1] + b"x") is None  # another CA


def test_signature_algorithms_config_can_only_narrow() -> None:
    assert parse_signature_algorithms({}) == SECURE_SIGNATURE_ALGORITHMS
    assert parse_signature_algorithms({"signature_algorithms": ["ssh-ed25519"]}) == (
        "ssh-ed25519",
    )
    with pytest.raises(ConfigError, match="ssh-rsa cannot be enabled"):
        parse_signature_algorithms({"signature_algorithms": ["ssh-ed25519", "ssh-rsa"]})
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_signature_algorithms({"signature_algorithms": []})


def test_narrowed_signature_algorithms_refuse_the_rest(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority
) -> None:
    """``[auth] signature_algorithms = ["ssh-ed25519"]``: an RSA agent key is refused at the
    userauth signature; an ed25519 one logs in. Naming ssh-rsa is a config error at load."""
    from bastion.config import load_config

    (tmp_path / "bad").mkdir()
    bad = write_config(tmp_path / "bad", ca, target_block(sshd))
    bad.write_text(bad.read_text().replace(
        "[auth]\n", '[auth]\nsignature_algorithms = ["ssh-ed25519", "ssh-rsa"]\n'))
    with pytest.raises(ConfigError, match=r"auth\.signature_algorithms: ssh-rsa cannot be enabled"):
        load_config(bad)
    (tmp_path / "narrow").mkdir()
    path = write_config(tmp_path / "narrow", ca, target_block(sshd))
    path.write_text(path.read_text().replace(
        "[auth]\n", '[auth]\nsignature_algorithms = ["ssh-ed25519"]\n'))
    running = start_bastion(path, bare_runtime)
    try:
        rsa = _agent(tmp_path / "rsa", ca, kind="rsa")
        refused = running.ssh(rsa, "web-01", "echo should-not-run")
        assert refused.returncode == 255
        assert b"which this bastion does not accept" in refused.stderr, refused.stderr
        ok = running.ssh(_agent(tmp_path / "ed", ca), "web-01", "echo ran")
        assert ok.stdout == b"ran\n", ok.stderr
    finally:
        running.stop()
