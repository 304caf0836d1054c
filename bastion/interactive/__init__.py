"""Line-owning control of interactive PTY shells (issue 4; docs/interactive.md).

Public API::

    factory = controller_factory(config)   # None unless [gate] shells = "gate"
    Runtime(..., shell_controller_factory=factory)
"""

from __future__ import annotations

import weakref

from bastion.config import Config
from bastion.hooks import ShellControllerFactory
from bastion.interactive.config import InteractiveConfig, parse_interactive_config
from bastion.interactive.controller import LineGateController, LineGateFactory
from bastion.interactive.programs import SHELL_STATE, ShellState, shell_floor

__all__ = [
    "SHELL_STATE",
    "InteractiveConfig",
    "LineGateController",
    "LineGateFactory",
    "ShellState",
    "controller_factory",
    "is_wired",
    "parse_interactive_config",
    "shell_floor",
]

# Configs for which a controller factory was built: the gate lets a PTY shell through only
# then, so a runtime that forgot to wire the factory refuses shells instead of relaying them.
_WIRED: dict[int, weakref.ref[Config]] = {}


def controller_factory(config: Config) -> ShellControllerFactory | None:
    from bastion.gate import gate_settings

    if gate_settings(config).shells != "gate":
        return None
    section = config.raw.get("interactive", {})
    if not isinstance(section, dict):
        from bastion.errors import ConfigError

        raise ConfigError(f"{config.path}: interactive", "expected a table")
    factory = LineGateFactory(parse_interactive_config(section, config.base_dir))
    _WIRED[id(config)] = weakref.ref(config)
    return factory


def is_wired(config: Config) -> bool:
    ref = _WIRED.get(id(config))
    return ref is not None and ref() is config
