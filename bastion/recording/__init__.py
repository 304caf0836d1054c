"""Session recordings: asciicast v2 files, hash-chained and sealed with an Ed25519 signature."""

from bastion.recording.config import RecordingConfig, parse_recording_config
from bastion.recording.errors import RecordingError
from bastion.recording.keys import RecordingKey, RecordingPublicKey
from bastion.recording.recorder import Recorder, SealInfo
from bastion.recording.store import RecordingStore
from bastion.recording.verify import VerifyResult, verify_recording

__all__ = [
    "Recorder",
    "RecordingConfig",
    "RecordingError",
    "RecordingKey",
    "RecordingPublicKey",
    "RecordingStore",
    "SealInfo",
    "VerifyResult",
    "parse_recording_config",
    "verify_recording",
]
