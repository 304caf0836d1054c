"""A real OpenSSH sshd on a free loopback port, as the bastion's target."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.certs import keygen

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class SshdTarget:
    directory: Path
    port: int
    host_key: Path
    client_key: Path  # the bastion's upstream identity, authorized on this target
    login: str
    process: subprocess.Popen[bytes]

    @property
    def host_public_key(self) -> str:
        return self.host_key.with_name(self.host_key.name + ".pub").read_text().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sshd(directory: Path, *, client_key: Path | None = None) -> SshdTarget:
    directory.mkdir(parents=True, exist_ok=True)
    host_key = keygen(directory / "ssh_host_ed25519_key")
    client_key = client_key or keygen(directory / "upstream_ed25519")
    auth_keys = directory / "authorized_keys"
    auth_keys.write_text(client_key.with_name(client_key.name + ".pub").read_text())
    auth_keys.chmod(0o600)
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {auth_keys}",
                f"PidFile {directory / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "PrintMotd no",
                "PrintLastLog no",
                "AcceptEnv LANG LC_* TERM",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "MaxStartups 200",
                "MaxSessions 100",
            ]
        )
        + "\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        wait_port(port)
    except TimeoutError:
        process.kill()
        raise RuntimeError((directory / "sshd.log").read_text()) from None
    return SshdTarget(directory, port, host_key, client_key, getpass.getuser(), process)
