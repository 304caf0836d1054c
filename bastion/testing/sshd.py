"""A real OpenSSH sshd on a free loopback port, as the bastion's target."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bastion.testing.certs import keygen

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
    keys_dir: Path

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
        shutil.rmtree(self.keys_dir, ignore_errors=True)


TEST_LOGIN = "azureuser"


def ensure_login() -> str:
    """The login used on the target: an unprivileged ``azureuser`` when we are root (sshd gives
    root sessions no privilege separation, so e.g. signals would not work), else ourselves."""
    if os.geteuid() != 0:
        return getpass.getuser()
    if subprocess.run(["id", TEST_LOGIN], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", TEST_LOGIN],
            check=True,
            capture_output=True,
        )
    # An unset password ("*") is not a locked account, so sshd lets keys in without PAM.
    subprocess.run(["usermod", "-p", "*", TEST_LOGIN], check=True, capture_output=True)
    return TEST_LOGIN


def start_sshd(
    directory: Path, *, client_key: Path | None = None, stock: bool = False
) -> SshdTarget:
    """``stock``: keep sshd's own MaxStartups (10:30:100) and MaxSessions (10), as on a stock
    VM, instead of the raised limits the other tests run against."""
    directory.mkdir(parents=True, exist_ok=True)
    login = ensure_login()
    host_key = keygen(directory / "ssh_host_ed25519_key")
    client_key = client_key or keygen(directory / "upstream_ed25519")
    # sshd reads authorized keys as the login user: keep them in a folder that user can read.
    keys_dir = Path(tempfile.mkdtemp(prefix="bastion-test-keys-"))
    keys_dir.chmod(0o755)
    auth_keys = keys_dir / "authorized_keys"
    auth_keys.write_text(client_key.with_name(client_key.name + ".pub").read_text())
    auth_keys.chmod(0o644)
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
                *([] if stock else ["MaxStartups 200", "MaxSessions 100"]),
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
    return SshdTarget(directory, port, host_key, client_key, login, process, keys_dir)
