"""Fixtures shared by the recording tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.recording import Recorder, RecordingKey

OUTPUT_CHUNKS = [
    b"$ echo h\xc3",
    b"\xa9llo \xe2\x82",
    b"\xac\r\n",
    b"h\xc3\xa9llo \xe2\x82\xac\r\n",
]
EXPECTED_TEXT = "$ echo héllo €\r\nhéllo €\r\n"


async def write_sample(root: Path, key: RecordingKey, session_id: str = "sess1") -> Recorder:
    """A closed recording with output split mid-character, input, resize, markers, a checkpoint."""
    rec = Recorder.create(
        root=root,
        session_id=session_id,
        channel=0,
        key=key,
        meta={"identity": "agent@example.test", "target": "vm1", "login": "azureuser"},
        command="bash",
        env={"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        title="test",
    )
    rec.output(OUTPUT_CHUNKS[0])
    rec.input(b"echo h\xc3\xa9llo \xe2\x82\xac\r")
    rec.output(OUTPUT_CHUNKS[1])
    rec.marker("gate allow: echo héllo €")
    await rec.sync()
    rec.output(OUTPUT_CHUNKS[2])
    rec.resize(120, 40)
    rec.output(OUTPUT_CHUNKS[3])
    rec.marker("session end")
    await rec.close(exit_status=0)
    return rec


@pytest.fixture
def key() -> RecordingKey:
    return RecordingKey.generate()


@pytest.fixture
async def sample(tmp_path: Path, key: RecordingKey) -> Recorder:
    return await write_sample(tmp_path / "recordings", key)


def write_config(base: Path, extra: str = "") -> Path:
    """A minimal valid bastion config in ``base`` whose state dir is ``base/state``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ca = Ed25519PrivateKey.generate().public_key()
    (base / "ca.pub").write_bytes(
        ca.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    path = base / "bastion.toml"
    path.write_text(
        '[server]\nstate_dir = "state"\n[auth]\ntrusted_user_ca_keys = ["ca.pub"]\n' + extra
    )
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path, '[recording]\nfsync_interval = "200ms"\n')
