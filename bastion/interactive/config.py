"""``[interactive]``: how line-gated PTY shells behave (see docs/interactive.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError

FALLBACKS = ("refuse", "review")


@dataclass(frozen=True)
class InteractiveConfig:
    # When the shell integration cannot be installed: end the session, or hold every line.
    fallback: str = "refuse"
    integration_timeout: float = 10.0  # seconds to wait for the first valid prompt marker
    confirm_timeout: float = 10.0  # seconds for the shell to report a delivered command
    max_unit: int = 64 * 1024  # bytes in one unit (all its lines)
    # Interactive programs that, once the line is allowed, get the agent's input passed through
    # while they run (the whole session is recorded anyway; the audit says so).
    passthrough: tuple[str, ...] = ()
    # Programs held for review in a PTY shell because they take over the terminal.
    extra_interactive: tuple[str, ...] = ()


def _seconds(value: Any, key: str) -> float:
    from bastion.config import parse_duration

    if isinstance(value, bool):
        raise ConfigError(f"interactive.{key}", "expected a duration such as '10s'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_duration(value)
    else:
        raise ConfigError(f"interactive.{key}", "expected a duration such as '10s'")
    if not 0 < seconds <= 600:
        raise ConfigError(f"interactive.{key}", "must be between 0 and 10 minutes")
    return seconds


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"interactive.{key}", "expected a list of program names")
    return tuple(value)


def parse_interactive_config(section: Mapping[str, Any], base_dir: Path) -> InteractiveConfig:
    """Validate ``[interactive]``; unknown keys are errors (a typo must not weaken a default)."""
    known = {"fallback", "integration_timeout", "confirm_timeout", "max_unit", "passthrough",
             "interactive_programs"}
    for key in section:
        if key not in known:
            raise ConfigError(f"interactive.{key}", "unknown key")
    cfg = InteractiveConfig()
    fallback = section.get("fallback", cfg.fallback)
    if fallback not in FALLBACKS:
        raise ConfigError("interactive.fallback", "expected 'refuse' or 'review'")
    max_unit = section.get("max_unit", cfg.max_unit)
    if isinstance(max_unit, bool) or not isinstance(max_unit, int) or not 1 <= max_unit <= 1 << 19:
        raise ConfigError("interactive.max_unit", "expected a byte count up to 524288")
    return InteractiveConfig(
        fallback=fallback,
        integration_timeout=_seconds(section.get("integration_timeout", 10.0),
                                     "integration_timeout"),
        confirm_timeout=_seconds(section.get("confirm_timeout", 10.0), "confirm_timeout"),
        max_unit=max_unit,
        passthrough=_names(section.get("passthrough", []), "passthrough"),
        extra_interactive=_names(section.get("interactive_programs", []), "interactive_programs"),
    )
