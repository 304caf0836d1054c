"""Start a bastion whose PTY shells are line-gated by the shipped policy."""

from __future__ import annotations

from pathlib import Path

from support.bastion import RunningBastion, start_bastion, target_block, write_config

from bastion.app import Runtime
from bastion.config import Config
from bastion.gate import build_gate
from bastion.hooks import OutputFilter
from bastion.interactive import controller_factory
from bastion.masking import load_masking_config
from bastion.ops.limits import parse_limits
from bastion.recording import RecordingStore, parse_recording_config
from bastion.testing.certs import CertificateAuthority
from bastion.testing.sshd import SshdTarget

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def line_gated_runtime(config: Config) -> Runtime:
    """What build_runtime builds, plus the line-owning shell controller."""
    rec = parse_recording_config(config.raw.get("recording", {}), config.base_dir, config.state_dir)
    masking = load_masking_config(config.raw.get("masking", {}), config.base_dir)

    def output_filter(*, pty: bool) -> OutputFilter:
        return masking.new_masker(pty)

    return Runtime(
        config=config,
        gate=build_gate(config),
        output_filter_factory=output_filter,
        recordings=RecordingStore.from_config(rec),
        audit_path=config.state_dir / "bastion.db",
        limits=parse_limits(config.raw.get("limits", {}), f"{config.path}: limits"),
        shell_controller_factory=controller_factory(config),
    )


def start_line_gated(
    directory: Path, sshd: SshdTarget, ca: CertificateAuthority, extra: str = ""
) -> RunningBastion:
    config = write_config(
        directory, ca, target_block(sshd), extra=f'[policy]\nfile = "{POLICY}"\n{extra}'
    )
    return start_bastion(config, line_gated_runtime)
