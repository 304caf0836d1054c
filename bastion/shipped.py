"""Files shipped inside the package: the default policy and the example config.

They live in ``config/`` in the source tree; ``bastion/_shipped`` is a symlink to that folder, so
an editable install reads the live files and the build copies them into the wheel as package
data (``[tool.setuptools.package-data]`` in ``pyproject.toml``). The policy loads
``tools/*.toml`` relative to its own file, so callers get a real folder, never a zip member.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_FOLDER = "_shipped"


def shipped_dir() -> Path:
    """The folder holding ``policy.toml``, ``bastion.example.toml`` and ``tools/``."""
    folder = resources.files("bastion").joinpath(_FOLDER)
    # resolve(): in a checkout, name the real ``config/`` folder in messages, not the symlink.
    # (A zipped install would give a path that does not exist: "policy file not found".)
    return Path(str(folder)).resolve()


def policy_path() -> Path:
    """The shipped command policy (``config/policy.toml`` in the source tree)."""
    return shipped_dir() / "policy.toml"


def example_config_path() -> Path:
    """The annotated example configuration (``config/bastion.example.toml``)."""
    return shipped_dir() / "bastion.example.toml"


def systemd_dir() -> Path:
    """The systemd unit, prune timer, tmpfiles and sysusers files (``systemd/``)."""
    return Path(str(resources.files("bastion").joinpath("_systemd"))).resolve()


def files() -> dict[str, Path]:
    """Every shipped file a deployment copies, by name (``bastion shipped NAME``)."""
    out = {p.name: p for p in (policy_path(), example_config_path())}
    folder = systemd_dir()
    if folder.is_dir():
        out.update({p.name: p for p in sorted(folder.iterdir()) if p.name.startswith("bastion")})
    return out
