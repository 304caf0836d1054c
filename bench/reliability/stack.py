"""The system under load: a real sshd target and ``bastion serve`` as a process, on loopback.

The bastion runs as shipped (policy gate, masking, recording, audit, approvals over its HTTP
page); only ``[limits]`` are raised so that 200 agents and their sessions fit. Operators are
enrolled with TOTP secrets the load's auto-approver knows. Everything listens on 127.0.0.1 and
is stopped by PID in ``Stack.stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bastion.testing.certs import CertificateAuthority, keygen
from bastion.testing.sshd import SshdTarget, free_port, start_sshd, wait_port
from bench.harness.env import SHIPPED_POLICY, write_bastion_config
from bench.harness.procs import descendants, rss_kib

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_GROUP = "sre"  # the shipped policy's az-group-delete rule names this approver group


def write_config(
    directory: Path,
    ca: CertificateAuthority,
    target: SshdTarget,
    *,
    port: int,
    http_port: int,
    workers: int | None = None,
) -> Path:
    """The benchmark's bastion (shipped policy, masking, recording; limits raised for one
    address and many identities) with approvals on the HTTP page."""
    extra = f'''
[http]
listen = "127.0.0.1:{http_port}"

[approvals]
timeout = "15m"
'''
    return write_bastion_config(directory, ca, target, port, SHIPPED_POLICY, workers, extra)


def cli(config: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``bastion ARGS --config CONFIG`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


async def _enrol(config: Path, names: list[str]) -> dict[str, str]:
    """Enrol operators in one process, as ``bastion operators add NAME --group sre`` does."""
    from bastion.approval import ApprovalBroker, parse_approvals_config
    from bastion.audit import AuditStore
    from bastion.audit.cli import db_path_from_config
    from bastion.config import load_config

    db_path = db_path_from_config(str(config))
    db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    audit = await AuditStore.open(db_path)
    try:
        broker = await ApprovalBroker.open(
            audit.db, audit, parse_approvals_config(load_config(config).raw)
        )
        secrets = {}
        for name in names:
            op = await broker.operators.add(name, groups=[OPERATOR_GROUP])
            secrets[name] = op.totp_secret
        return secrets
    finally:
        await audit.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{db_path}{suffix}", 0o600)


def enrol_operators(config: Path, count: int) -> dict[str, str]:
    """``count`` operators in the approver group: name -> TOTP secret. The first is enrolled
    with the real CLI (its printed otpauth URI is the secret), the rest in one process."""
    import pyotp

    first = cli(config, "operators", "add", "load-op0", "--group", OPERATOR_GROUP, timeout=120)
    if first.returncode != 0:
        raise RuntimeError(f"operators add failed: {first.stderr.strip()}")
    secrets = {"load-op0": pyotp.parse_uri(first.stdout.splitlines()[0]).secret}
    rest = [f"load-op{i}" for i in range(1, count)]
    secrets.update(asyncio.run(_enrol(config, rest)))
    return secrets


@dataclass
class Stack:
    """Keys, the target sshd and the bastion process of one reliability run."""

    root: Path
    ca: CertificateAuthority
    target: SshdTarget
    config: Path
    port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    known_hosts: Path | None = None
    operators: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path | None = None, workers: int | None = None) -> Stack:
        # World-readable: sshd reads authorized keys as the target login (azureuser under root).
        root = root or Path(tempfile.mkdtemp(prefix="bastion-reliability-"))
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        keys = root / "keys"
        keys.mkdir(exist_ok=True)
        ca = CertificateAuthority.create(keys)
        target = start_sshd(root / "target", client_key=keygen(keys / "upstream_ed25519"))
        port, http_port = free_port(), free_port()
        config = write_config(root, ca, target, port=port, http_port=http_port, workers=workers)
        return cls(root, ca, target, config, port, http_port)

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def recordings_dir(self) -> Path:
        return self.state_dir / "recordings"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start_bastion(self) -> None:
        """``bastion serve`` as a process; returns once it accepts connections."""
        self.log = self.root / "bastion.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli", "serve", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            cwd=ROOT,
        )
        try:
            wait_port(self.port, 60)
            wait_port(self.http_port, 30)
        except TimeoutError:
            self.stop_bastion()
            tail = self.log.read_text()[-2000:]
            raise RuntimeError(f"the bastion did not listen: {tail}") from None
        host_pub = (self.root / "ssh_host_ed25519_key.pub").read_text().strip()
        self.known_hosts = self.root / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")

    def tree_rss_kib(self) -> int:
        """RSS of the bastion's whole process tree: the master and any worker processes."""
        assert self.process is not None
        total = 0
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(OSError, RuntimeError):  # a worker may exit while we look
                total += rss_kib(pid)
        return total

    def tree_pids(self) -> list[int]:
        assert self.process is not None
        return [self.process.pid, *descendants(self.process.pid)]

    def stop_bastion(self) -> int | None:
        """SIGTERM by PID (a graceful stop), SIGKILL if it does not exit; the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        return process.returncode

    def stop(self, keep: bool = False) -> None:
        with contextlib.suppress(OSError):
            self.stop_bastion()
        with contextlib.suppress(OSError):
            self.target.stop()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


def wait_until(check: object, timeout: float, step: float = 0.2) -> bool:
    """Poll ``check()`` until true or ``timeout`` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(step)
    return bool(check())  # type: ignore[operator]
