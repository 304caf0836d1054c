"""With the required sinks on, every channel is recorded (playable, sealed) and audited."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import asyncssh
import orjson
import pytest
from support.bastion import recorded_runtime, start_bastion, target_block, write_config

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

VENV_BIN = Path(sys.executable).parent


def bastion_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args], capture_output=True, text=True, timeout=60
    )


def audit_rows(config: Path) -> list[dict[str, object]]:
    out = bastion_cli("audit", "export", "--config", str(config), "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    return [orjson.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_exec_is_recorded_sealed_and_audited(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """An exec leaves a sealed .cast that asciinema renders and audit rows for every step."""
    config = write_config(tmp_path, ca, target_block(sshd))
    running = start_bastion(config, recorded_runtime)
    try:
        result = running.ssh(agent, "web-01", "echo recorded-line; exit 3")
        assert result.returncode == 3
    finally:
        running.stop()
    casts = sorted((tmp_path / "state" / "recordings").rglob("*.cast"))
    assert len(casts) == 1
    verify = bastion_cli("recordings", "verify", "--config", str(config), str(casts[0]))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rendered = subprocess.run(
        [str(VENV_BIN / "asciinema"), "cat", str(casts[0])], capture_output=True, timeout=30
    )
    assert b"recorded-line" in rendered.stdout
    kinds = [row["kind"] for row in audit_rows(config)]
    for kind in ("session_start", "command", "command_exit", "recording_sealed", "session_end"):
        assert kind in kinds, kinds
    assert kinds.index("command") < kinds.index("command_exit")
    command = next(r for r in audit_rows(config) if r["kind"] == "command")
    assert command["fields"]["decision"] == "allow"  # type: ignore[index]
    exit_row = next(r for r in audit_rows(config) if r["kind"] == "command_exit")
    assert exit_row["fields"]["exit_status"] == 3  # type: ignore[index]
    chain = bastion_cli("audit", "verify", "--config", str(config))
    assert chain.returncode == 0, chain.stdout + chain.stderr


async def test_pty_resize_is_recorded(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """A window change in a PTY session becomes an asciicast ``r`` event."""
    config = write_config(tmp_path, ca, target_block(sshd))
    running = await asyncio.to_thread(start_bastion, config, recorded_runtime)
    try:
        key = asyncssh.read_private_key(str(agent.key))
        cert = asyncssh.read_certificate(str(agent.cert))
        async with asyncssh.connect(
            "127.0.0.1",
            running.port,
            username="web-01",
            client_keys=[(key, cert)],
            known_hosts=str(running.known_hosts),
            config=[],
            agent_path=None,
        ) as conn:
            proc = await conn.create_process(term_type="xterm", term_size=(80, 24), encoding=None)
            proc.change_terminal_size(100, 30)
            proc.stdin.write(b"echo $((6*7))\n")
            data = b""
            while b"42" not in data:
                data += await asyncio.wait_for(proc.stdout.read(4096), 10)
            proc.stdin.write(b"exit\n")
            await asyncio.wait_for(proc.wait(), 10)
    finally:
        await asyncio.to_thread(running.stop)
    cast = next((tmp_path / "state" / "recordings").rglob("*.cast"))
    events = [orjson.loads(line) for line in cast.read_text().splitlines()[1:]]
    assert [e[2] for e in events if e[1] == "r"] == ["100x30"]
    assert any(e[1] == "i" for e in events)


def test_session_refused_when_recording_cannot_be_written(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """A bastion that cannot create its recordings folder does not start; if the folder breaks
    while it runs, new channels are refused: nothing runs unrecorded."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the recordings folder should be")
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    extra_bad = f'[recording]\ndir = "{blocker}/r"\n'
    bad = write_config(bad_dir, ca, target_block(sshd), extra=extra_bad)
    with pytest.raises(RuntimeError, match="cannot create the recordings folder"):
        start_bastion(bad, recorded_runtime)

    recordings = tmp_path / "recordings"
    extra = f'[recording]\ndir = "{recordings}"\n'
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra)
    marker = tmp_path / "ran"
    running = start_bastion(config, recorded_runtime)
    try:
        shutil.rmtree(recordings)
        recordings.write_text("the folder was replaced by a file")
        result = running.ssh(agent, "web-01", f"touch {marker}")
    finally:
        running.stop()
    assert result.returncode == 255
    assert b"bastion: cannot record this session" in result.stderr
    assert not marker.exists()


def _leaks(secret: str, data: bytes, run: int = 8) -> bool:
    """True if any ``run``-character piece of ``secret`` appears in ``data``."""
    text = data.decode(errors="replace")
    return any(secret[i : i + run] in text for i in range(len(secret) - run + 1))


def test_secret_in_output_is_masked_for_agent_and_recording(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """A storage connection string the target prints in two pieces reaches neither the agent
    nor the recording unmasked."""
    import base64
    import secrets
    import tempfile

    key = base64.b64encode(secrets.token_bytes(64)).decode()  # the shape of a storage key
    conn = (
        f"DefaultEndpointsProtocol=https;AccountName=stfake{secrets.token_hex(3)};"
        f"AccountKey={key};EndpointSuffix=core.windows.net"
    )
    shared = Path(tempfile.mkdtemp(prefix="bastion-test-secret-"))
    shared.chmod(0o755)
    secret_file = shared / "conn.txt"
    secret_file.write_text(conn + "\n")
    secret_file.chmod(0o644)
    split = conn.index("AccountKey=") + 30  # cut inside the key itself
    command = f"head -c {split} {secret_file}; sleep 0.5; tail -c +{split + 1} {secret_file}"
    config = write_config(tmp_path, ca, target_block(sshd))
    running = start_bastion(config, recorded_runtime)
    try:
        result = running.ssh(agent, "web-01", command)
    finally:
        running.stop()
        secret_file.unlink()
        shared.rmdir()
    assert result.returncode == 0, result.stderr
    assert b"AccountName=stfake" in result.stdout  # the non-secret context is kept
    assert not _leaks(key, result.stdout)
    cast = next((tmp_path / "state" / "recordings").rglob("*.cast"))
    assert not _leaks(key, cast.read_bytes())
    rows = audit_rows(config)
    exit_row = next(r for r in rows if r["kind"] == "command_exit")
    assert sum(exit_row["fields"]["masked"].values()) >= 1  # type: ignore[index,union-attr]


@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom"])
def test_binary_output_is_relayed_and_recorded_exactly_and_compactly(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent, source: str
) -> None:
    """2 MiB of zeros or random bytes through the real client: the agent gets every byte, the
    recording keeps them exactly in at most 1.2x their size, verifies, and exports as a plain
    asciicast that asciinema reads."""
    config = write_config(tmp_path, ca, target_block(sshd))
    running = start_bastion(config, recorded_runtime)
    size = 2 * 1024 * 1024
    try:
        command = (f"f=$(mktemp); head -c {size} {source} > $f; cat $f; sha256sum < $f >&2;"
                   " rm -f $f")
        result = running.ssh(agent, "web-01", command)
    finally:
        running.stop()
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == size
    import hashlib

    assert hashlib.sha256(result.stdout).hexdigest() in result.stderr.decode()
    cast = next((tmp_path / "state" / "recordings").rglob("*.cast"))
    stored = cast.stat().st_size + cast.with_name(cast.name + ".bin").stat().st_size
    assert stored <= 1.2 * size
    verify = bastion_cli("recordings", "verify", "--config", str(config), str(cast))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    exported = bastion_cli("recordings", "export", "--config", str(config), str(cast))
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.rstrip("\n").split("\n")  # not splitlines: U+2028 is data
    assert orjson.loads(lines[0])["version"] == 2
    assert {orjson.loads(line)[1] for line in lines[1:]} <= set("oirm")
