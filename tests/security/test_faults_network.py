"""Network faults around one target while another session is open: a real TCP cut mid-transfer,
the target going down, the target's host key changing, a notifier endpoint that hangs. Each time
the affected session fails closed with one clear line, the open session keeps being served,
and every audit row and recording verifies afterwards (nothing acknowledged is lost)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyotp
import pytest
from security.tcp_proxy import TcpProxy
from support.bastion import (
    RunningBastion,
    recorded_runtime,
    start_bastion,
    target_block,
    write_config,
)

from bastion.app import build_runtime
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget, start_sshd


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def audit_rows(config: Path) -> list[dict[str, Any]]:
    out = cli(config, "audit", "export", "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    return [orjson.loads(line) for line in out.stdout.splitlines()]


def nothing_lost(config: Path, commands: list[str]) -> dict[str, int]:
    """The audit chain and every recording verify; each command sent has exactly one row."""
    verify = cli(config, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    recordings = config.parent / "state" / "recordings"
    casts = list(recordings.rglob("*.cast"))
    checked = cli(config, "recordings", "verify", str(recordings))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rows = audit_rows(config)
    audited = [r["fields"]["command"] for r in rows if r["kind"] == "command"]
    assert sorted(audited) == sorted(commands)  # each exactly once, nothing else
    sealed = [r for r in rows if r["kind"] == "recording_sealed"]
    assert len(sealed) == len(casts)
    return {"audit_rows": len(rows), "recordings": len(casts), "lost_rows": 0}


def report(fault: str, **figures: object) -> None:
    """One JSON line per fault for scripts/reliability.sh (when it asks for them)."""
    path = os.environ.get("BASTION_RELIABILITY_REPORT")
    if path:
        with open(path, "ab") as out:
            out.write(orjson.dumps({"fault": fault, **figures}) + b"\n")


class Steady:
    """An open session (`cat` on a healthy target) that must keep echoing through a fault."""

    def __init__(self, running: RunningBastion, agent: Agent, target: str) -> None:
        self.proc = subprocess.Popen(
            [*running.ssh_args(agent, target), "cat"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.echoes = 0

    def echo(self, line: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == line.encode() + b"\n"
        self.echoes += 1

    def finish(self) -> None:
        """End of input: `cat` exits 0 after echoing everything."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        assert self.proc.stdout.read() == b""
        assert self.proc.wait(30) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def trace_dir() -> Iterator[Path]:
    """A world-writable folder: a command that must not run would leave a file here."""
    path = Path(tempfile.mkdtemp(prefix="bastion-fault-trace-"))
    path.chmod(0o777)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_target_tcp_connection_cut_mid_transfer(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """An RST on the bastion's TCP connection to the target (a loopback proxy is cut) in the
    middle of a megabyte stream: that session ends with one line and exit 255, a session open
    on another target keeps echoing, and a new session through the same path works again."""
    proxy = TcpProxy(sshd.port)
    config = write_config(
        tmp_path, ca,
        target_block(sshd, "web-cut", port=proxy.port) + target_block(sshd, "web-01"),
    )  # fmt: skip
    running = start_bastion(config, recorded_runtime)
    steady = Steady(running, agent, "web-01")
    stream_cmd = "while head -c 65536 /dev/zero; do :; done"
    try:
        steady.echo("before the cut")
        stream = subprocess.Popen(
            [*running.ssh_args(agent, "web-cut"), stream_cmd],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert stream.stdout is not None
        assert len(stream.stdout.read(1 << 20)) == 1 << 20  # a megabyte is flowing
        assert proxy.cut() == 1
        _, err = stream.communicate(timeout=60)
        assert stream.returncode == 255
        assert err.strip().splitlines() == [b"bastion: the connection to the target was lost"]
        steady.echo("after the cut")
        again = running.ssh(agent, "web-cut", "echo reconnected")
        assert again.stdout == b"reconnected\n", again.stderr
        steady.finish()
    finally:
        steady.kill()
        running.stop()
        proxy.close()
    figures = nothing_lost(config, [stream_cmd, "cat", "echo reconnected"])
    ends = [r for r in audit_rows(config) if r["kind"] == "session_end"]
    assert any(r["fields"]["exit_status"] == 255 for r in ends)
    report("target TCP connection cut mid-transfer (RST)", other_session_echoes=steady.echoes,
           affected="bastion: the connection to the target was lost", **figures)  # fmt: skip


def test_target_goes_down(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """A target that served a session then stops: the next session to it is refused with one
    line naming the target; the open session on another target is unaffected."""
    down = start_sshd(tmp_path / "down")
    config = write_config(
        tmp_path, ca,
        target_block(down, "web-down", connect_timeout='"5s"') + target_block(sshd, "web-01"),
    )  # fmt: skip
    running = start_bastion(config, recorded_runtime)
    steady = Steady(running, agent, "web-01")
    try:
        steady.echo("target up")
        assert running.ssh(agent, "web-down", "echo up").stdout == b"up\n"
        down.stop()  # by PID
        refused = running.ssh(agent, "web-down", "echo never")
        assert refused.returncode == 255
        assert refused.stdout == b""
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith(b"bastion: target 'web-down' is unreachable: "), line
        steady.echo("target down")
        steady.finish()
    finally:
        steady.kill()
        running.stop()
        down.stop()
    figures = nothing_lost(config, ["cat", "echo up", "echo never"])
    report("target down", other_session_echoes=steady.echoes, affected=line.decode(), **figures)


def test_target_host_key_changes(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent, trace_dir: Path
) -> None:
    """The target's address now answers with another host key (reinstalled, or a machine in
    the middle that even accepts the bastion's key): nothing runs there, one line says why,
    and the session opened before the change keeps working."""
    proxy = TcpProxy(sshd.port)
    imposter = start_sshd(tmp_path / "imposter", client_key=sshd.client_key)
    config = write_config(
        tmp_path, ca,
        target_block(sshd, "web-moved", port=proxy.port) + target_block(sshd, "web-01"),
    )  # fmt: skip
    running = start_bastion(config, recorded_runtime)
    before = Steady(running, agent, "web-moved")  # opened while the key was the pinned one
    other = Steady(running, agent, "web-01")
    probe = f"touch {trace_dir}/ran"
    try:
        before.echo("pinned key")
        other.echo("pinned key")
        proxy.retarget(imposter.port)
        # Rarely (about 1 run in 8 on the loaded CI machine) the bastion's connection is reset
        # before the proxy has forwarded it anywhere: the session still fails closed
        # ("unreachable"), but the host key was never seen. Such an attempt is retried; the
        # fault is the attempt the proxy did forward to the imposter.
        attempts = 0
        for _attempt in range(3):
            attempts += 1
            forwarded = proxy.accepted
            refused = running.ssh(agent, "web-moved", probe)
            assert refused.returncode == 255
            (line,) = refused.stderr.strip().splitlines()
            assert proxy.errors == [], (proxy.errors, line)
            if proxy.accepted > forwarded or b"pinned key" in line:
                break
            assert line.startswith(b"bastion: target 'web-moved' is unreachable: "), line
        assert line == (
            b"bastion: the host key of target 'web-moved' does not match the pinned key; refusing"
        )
        assert not (trace_dir / "ran").exists()
        before.echo("key changed")
        other.echo("key changed")
        before.finish()
        other.finish()
    finally:
        before.kill()
        other.kill()
        running.stop()
        proxy.close()
        imposter.stop()
    figures = nothing_lost(config, ["cat", "cat"] + [probe] * attempts)
    report("target host key changed", other_session_echoes=before.echoes + other.echoes,
           affected=line.decode(), **figures)  # fmt: skip


class HangingEndpoint:
    """An HTTP endpoint that reads requests and never answers (until closed)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.open.append(conn)
            with contextlib.suppress(OSError):
                conn.settimeout(10)
                self.requests.append(conn.recv(65536))

    def hanging(self) -> int:
        """Requests received and still unanswered (the client has not given up)."""
        alive = 0
        for conn in self.open:
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                try:
                    alive += conn.recv(1, socket.MSG_PEEK) != b""
                except BlockingIOError:
                    alive += 1  # open, nothing more sent: still waiting for our answer
        return alive

    def close(self) -> None:
        self.listener.close()
        for conn in self.open:
            conn.close()


HOLD_POLICY = """
[policy]
version = 1
default = "review"

[[rules]]
id = "everyday"
action = "allow"
reason = "harmless"
program = ["echo", "cat"]

[[rules]]
id = "az-group-delete"
action = "review"
reason = "deletes an Azure resource group"
program = ["az"]
subcommand = ["group delete"]
approvers = ["sre"]
timeout = "5m"
"""


def test_notifier_endpoint_hangs(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """A webhook notifier whose endpoint accepts the request and never answers: the held
    command is still approved (CLI, TOTP) and runs while the webhook call hangs, other
    sessions are served meanwhile, and the audit and recordings verify."""
    endpoint = HangingEndpoint()
    (tmp_path / "policy.toml").write_text(HOLD_POLICY)
    secret = tmp_path / "hook"
    secret.write_text("generated-webhook-signing-secret-" + os.urandom(8).hex() + "\n")
    secret.chmod(0o600)
    notify = (
        '[http]\nlisten = "127.0.0.1:0"\n'
        f'[[notify]]\ntype = "webhook"\nname = "pager"\nurl = "{endpoint.url}/hook"\n'
        'secret_file = "hook"\ntimeout = "2m"\nretries = 0\n'
    )
    config = write_config(
        tmp_path, ca, target_block(sshd), extra='[policy]\nfile = "policy.toml"\n' + notify
    )
    enrolled = cli(config, "operators", "add", "alice", "--group", "sre")
    assert enrolled.returncode == 0, enrolled.stderr
    totp = pyotp.parse_uri(enrolled.stdout.splitlines()[0])
    running = start_bastion(config, build_runtime)
    steady = Steady(running, agent, "web-01")
    held_cmd = "az group delete -n rg-hang --yes; echo ran-after-approval"
    try:
        steady.echo("before the hold")
        held = subprocess.Popen(
            [*running.ssh_args(agent, "web-01"), held_cmd],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert held.stderr is not None
        line = held.stderr.readline().decode()
        assert line.startswith("bastion: held for review as "), line
        request_id = line.split(" as ", 1)[1].split()[0]
        deadline = time.monotonic() + 60
        while not endpoint.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert endpoint.requests and request_id.encode() in endpoint.requests[0]
        steady.echo("while the webhook hangs")
        other = running.ssh(agent, "web-01", "echo other-session")
        assert other.stdout == b"other-session\n"
        done = cli(config, "approvals", "approve", request_id, "--operator", "alice",
                   "--totp", totp.now())  # fmt: skip
        assert done.returncode == 0, done.stderr
        out, _ = held.communicate(timeout=60)
        assert out == b"ran-after-approval\n" and held.returncode == 0
        assert endpoint.hanging() == 1  # the webhook call is still waiting for its answer
        steady.finish()
    finally:
        steady.kill()
        running.stop()
        endpoint.close()
    figures = nothing_lost(config, ["cat", held_cmd, "echo other-session"])
    events = [
        r["fields"]["event"] for r in audit_rows(config)
        if r["kind"] == "approval" and r["fields"].get("request") == request_id
    ]  # fmt: skip
    assert events[:2] == ["submitted", "approved"], events
    outcome = "none: the held command was approved and ran while the webhook hung"
    report("notifier endpoint hangs", other_session_echoes=steady.echoes, affected=outcome,
           **figures)  # fmt: skip
