"""The ``[recording]`` config section.

```toml
[recording]
dir = "state/recordings"      # default: <state_dir>/recordings (relative paths: config folder)
fsync_interval = "1s"         # flush + fsync + signed checkpoint at most this far apart
record_input = true           # also record what the agent typed ("i" events)
key_file = "state/recording_key"   # default: <state_dir>/recording_key (+ .pub beside it)
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.config import parse_duration
from bastion.errors import ConfigError

_KEYS = frozenset({"dir", "fsync_interval", "record_input", "key_file"})


@dataclass(frozen=True)
class RecordingConfig:
    dir: Path
    key_file: Path
    fsync_interval: float = 1.0
    record_input: bool = True

    @property
    def public_key_file(self) -> Path:
        return self.key_file.with_name(self.key_file.name + ".pub")


def parse_recording_config(
    section: Mapping[str, Any], base_dir: Path, state_dir: Path, where: str = "recording"
) -> RecordingConfig:
    """Validate ``[recording]``; unknown keys are errors so a typo is never silently ignored."""
    if not isinstance(section, Mapping):
        raise ConfigError(where, "expected a table")
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", "unknown key")

    def path(key: str, default: Path) -> Path:
        value = section.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key}", "expected a non-empty path string")
        return (base_dir / value).resolve()

    interval = parse_duration(section.get("fsync_interval", "1s"), f"{where}.fsync_interval")
    if not 0 < interval <= 60:
        raise ConfigError(f"{where}.fsync_interval", "must be between 0 and 60 seconds")
    record_input = section.get("record_input", True)
    if not isinstance(record_input, bool):
        raise ConfigError(f"{where}.record_input", "expected true or false")
    return RecordingConfig(
        dir=path("dir", state_dir / "recordings"),
        key_file=path("key_file", state_dir / "recording_key"),
        fsync_interval=interval,
        record_input=record_input,
    )
