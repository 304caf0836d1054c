"""Operations against a real `bastion serve`: sd_notify on a real datagram socket, health
endpoints, and Prometheus metrics that count what actually happened."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support.bastion import target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority, keygen
from bastion.testing.sshd import SshdTarget, free_port, wait_port

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def receive(sock: socket.socket, wanted: str) -> list[str]:
    """Datagrams until one contains ``wanted`` (sd_notify messages are KEY=VALUE lines)."""
    seen: list[str] = []
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message.splitlines():
            return seen


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_notify_health_and_metrics(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """READY/RELOADING/STOPPING reach NOTIFY_SOCKET; /healthz and /readyz answer 200; /metrics
    counts the session, an allowed and a denied decision, bytes and a refused login."""
    ssh_port, http_port = free_port(), free_port()
    extra = f'[policy]\nfile = "{POLICY}"\n[http]\nlisten = "127.0.0.1:{http_port}"\n'
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra)
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{ssh_port}"', 1))
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert any("READY=1" in m for m in receive(notify, "READY=1"))
        wait_port(ssh_port, 10)
        base = f"http://127.0.0.1:{http_port}"
        assert urllib.request.urlopen(f"{base}/healthz", timeout=10).status == 200
        try:
            assert urllib.request.urlopen(f"{base}/readyz", timeout=10).status == 200
        except urllib.error.HTTPError as exc:
            raise AssertionError(exc.read().decode()) from None

        known = tmp_path / "known"
        known.write_text(
            f"[127.0.0.1]:{ssh_port} {(tmp_path / 'ssh_host_ed25519_key.pub').read_text()}"
        )
        ssh = [
            "ssh", "-F", "/dev/null", "-p", str(ssh_port), "-o", f"UserKnownHostsFile={known}",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        ]  # fmt: skip
        me = [*ssh, "-i", str(agent.key), "-o", f"CertificateFile={agent.cert}", "web-01@127.0.0.1"]
        assert (
            subprocess.run([*me, "echo metrics"], capture_output=True, timeout=30).returncode == 0
        )
        denied = subprocess.run([*me, "rm -rf /"], capture_output=True, timeout=30)
        assert denied.returncode == 126
        plain = keygen(tmp_path / "plain")
        subprocess.run([*ssh, "-i", str(plain), "web-01@127.0.0.1", "true"], capture_output=True)

        text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert metric(text, "bastion_sessions_total", target="web-01") >= 2
        assert metric(text, "bastion_decisions_total", action="allow") >= 1
        assert metric(text, "bastion_decisions_total", action="deny", rule="rm-catastrophic") == 1
        assert metric(text, "bastion_relayed_bytes_total", direction="out") >= len(b"metrics\n")
        assert (
            sum(
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "bastion_auth_failures_total"
            )
            >= 1
        )

        server.send_signal(signal.SIGHUP)
        seen = receive(notify, "READY=1")
        assert any("RELOADING=1" in m for m in seen)
        server.send_signal(signal.SIGTERM)
        assert any("STOPPING=1" in m for m in receive(notify, "STOPPING=1"))
        assert server.wait(20) == 0
    finally:
        if server.poll() is None:
            server.kill()
        notify.close()
