"""The loopback set-up: an OpenSSH target, an OpenSSH jump host, and the bastion as a process.

Three ways to reach the same target sshd, each with the real ``ssh`` client:

- ``direct``: straight to the target (the physical limit);
- ``jump``: through a second sshd with ``ssh -W`` (what ``ssh -J`` runs; spelled out as a
  ProxyCommand so the jump hop uses the same cipher and known_hosts as the other hops);
- ``bastion``: ``bastion serve`` with the shipped policy, masking and recording on.

Everything listens on 127.0.0.1 and is stopped by PID in ``BenchEnv.stop``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bastion.testing.certs import Agent, CertificateAuthority, keygen
from bastion.testing.sshd import SshdTarget, free_port, start_sshd, wait_port
from bench.harness.procs import CpuMeter

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_POLICY = ROOT / "config" / "policy.toml"
PATHS = ("direct", "jump", "bastion")
CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com")
# Every client hop uses the same key exchange. OpenSSH's default (sntrup761x25519) costs the
# client ~60 ms CPU per connection and the bastion does not offer it, so leaving it on would
# measure the choice of key exchange rather than the relay.
KEX = "curve25519-sha256"


@dataclass
class BastionProcess:
    process: subprocess.Popen[bytes]
    port: int
    config: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def write_bastion_config(
    directory: Path,
    ca: CertificateAuthority,
    target: SshdTarget,
    port: int,
    policy: Path,
    workers: int | None = None,
    extra: str = "",
) -> Path:
    """The bastion as shipped: policy gate, masking and recording at their defaults (and the
    shipped number of worker processes, one per core, unless ``workers`` says otherwise);
    ``extra`` adds TOML sections (the reliability load's HTTP server and approvals)."""
    path = directory / "bastion.toml"
    workers_line = "" if workers is None else f"workers = {workers}\n"
    path.write_text(
        f"""[server]
listen = "127.0.0.1:{port}"
host_key = "ssh_host_ed25519_key"
state_dir = "state"
{workers_line}
[auth]
trusted_user_ca_keys = ["{ca.public_key}"]
max_cert_validity = "24h"

[policy]
file = "{policy}"
{extra}
# The benchmark holds up to 1000 sessions of one certificate and opens 50 streams at once, the
# reliability load 200 agents from one address; the shipped caps (256 connections, 8 sessions
# per identity) would refuse them. Every guardrail stays on.
[limits]
max_connections = 5000
max_sessions_per_identity = 5000

[[targets]]
name = "web-01"
host = "127.0.0.1"
port = {target.port}
login = "{target.login}"
host_key = "{target.host_public_key}"
identity_file = "{target.client_key}"

[[access]]
principals = ["agents"]
targets = ["web-*"]
logins = ["*"]
"""
    )
    return path


def start_bastion(directory: Path, config: Path, port: int) -> BastionProcess:
    log = directory / "bastion.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 - closed with the process
        cwd=ROOT,
    )
    try:
        wait_port(port, 30)
    except TimeoutError:
        process.kill()
        process.wait(5)
        raise RuntimeError(f"the bastion did not listen: {log.read_text()[-2000:]}") from None
    return BastionProcess(process, port, config, log)


@dataclass
class BenchEnv:
    """Keys, the two sshds, the bastion process and the data files of one benchmark run."""

    root: Path
    ca: CertificateAuthority
    agent: Agent
    client_key: Path  # authorised on target and jump host; also the bastion's upstream key
    target: SshdTarget
    jump: SshdTarget
    bastion: BastionProcess
    known_hosts: Path
    data_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    meters: dict[str, CpuMeter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in PATHS:
            self.meters[path] = CpuMeter(self.server_pid(path), path)

    @classmethod
    def create(cls, policy: Path = SHIPPED_POLICY, workers: int | None = None) -> BenchEnv:
        # World-readable: the target's login (azureuser when we are root) reads the data files.
        root = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
        root.chmod(0o755)
        keys = root / "keys"
        keys.mkdir()
        ca = CertificateAuthority.create(keys)
        agent = Agent.create(keys, ca, validity="-5m:+12h")
        client_key = keygen(keys / "client_ed25519")
        target = start_sshd(root / "target", client_key=client_key)
        try:
            jump = start_sshd(root / "jump", client_key=client_key)
        except BaseException:
            target.stop()
            raise
        try:
            port = free_port()
            config = write_bastion_config(root, ca, target, port, policy, workers)
            bastion = start_bastion(root, config, port)
        except BaseException:
            jump.stop()
            target.stop()
            raise
        host_pub = (root / "ssh_host_ed25519_key.pub").read_text().strip()
        known = root / "known_hosts"
        known.write_text(
            f"[127.0.0.1]:{target.port} {target.host_public_key}\n"
            f"[127.0.0.1]:{jump.port} {jump.host_public_key}\n"
            f"[127.0.0.1]:{port} {host_pub}\n"
        )
        data = root / "data"
        data.mkdir()
        data.chmod(0o755)
        return cls(root, ca, agent, client_key, target, jump, bastion, known, data)

    # -- data files the target serves -------------------------------------------------------
    def data_file(self, name: str, size: int, pattern: bytes) -> Path:
        """A world-readable file of ``size`` bytes made of ``pattern`` repeated."""
        path = self.data_dir / name
        if path.exists() and path.stat().st_size == size:
            return path
        with path.open("wb") as fh:
            left = size
            while left > 0:
                piece = pattern[:left]
                fh.write(piece)
                left -= len(piece)
        path.chmod(0o644)
        self.files[name] = path
        return path

    def recording_bytes(self) -> int:
        """Bytes of every recording file the bastion has written so far."""
        rec = self.root / "state" / "recordings"
        return sum(f.stat().st_size for f in rec.rglob("*") if f.is_file()) if rec.is_dir() else 0

    # -- the real ssh client for each path --------------------------------------------------
    def _common(self, cipher: str) -> list[str]:
        return [
            "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "ConnectTimeout=15",
            "-o", "LogLevel=ERROR",
            "-o", f"KexAlgorithms={KEX}",
            "-c", cipher,
        ]  # fmt: skip

    def ssh_args(self, path: str, command: str, cipher: str = CIPHERS[0]) -> list[str]:
        """``ssh ... COMMAND`` over ``path`` (direct, jump or bastion)."""
        common = self._common(cipher)
        login = self.target.login
        if path == "direct":
            return ["ssh", *common, "-i", str(self.client_key), "-p", str(self.target.port),
                    f"{login}@127.0.0.1", command]  # fmt: skip
        if path == "jump":
            hop = ["ssh", *common, "-i", str(self.client_key), "-p", str(self.jump.port),
                   "-W", "%h:%p", f"{self.jump.login}@127.0.0.1"]  # fmt: skip
            return ["ssh", *common, "-i", str(self.client_key),
                    "-o", f"ProxyCommand={shlex.join(hop)}",
                    "-p", str(self.target.port), f"{login}@127.0.0.1", command]  # fmt: skip
        if path == "bastion":
            assert self.agent.cert is not None
            return ["ssh", *common, "-i", str(self.agent.key),
                    "-o", f"CertificateFile={self.agent.cert}",
                    "-p", str(self.bastion.port), "web-01@127.0.0.1", command]  # fmt: skip
        raise ValueError(f"unknown path {path!r}")

    def cpu_seconds(self, path: str) -> float:
        """CPU so far of the middle of ``path`` (the target's sshd for ``direct``)."""
        return self.meters[path].seconds()

    def server_pid(self, path: str) -> int:
        """The process whose CPU is the cost of the middle of ``path`` (the target for direct)."""
        return {
            "direct": self.target.process.pid,
            "jump": self.jump.process.pid,
            "bastion": self.bastion.pid,
        }[path]

    def stop(self, keep: bool = False) -> None:
        """Stop the bastion and both sshds by PID, then remove the workspace."""
        for stop in (self.bastion.stop, self.jump.stop, self.target.stop):
            with contextlib.suppress(OSError):
                stop()
        for meter in self.meters.values():
            meter.close()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


def raise_nofile() -> int:
    """Raise the open-files limit to the hard limit (1000 idle sessions need a few thousand)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def machine_facts() -> dict[str, str]:
    """What the figures were measured on."""
    import platform

    import asyncssh

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssh": ssh_version,
        "asyncssh": asyncssh.__version__,
    }
