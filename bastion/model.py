"""Plain data shared across the bastion: who is connected, to what, asking for what."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ChannelKind = Literal["exec", "shell", "subsystem"]


@dataclass(frozen=True)
class Identity:
    """The agent, as proven by its OpenSSH user certificate."""

    key_id: str
    serial: int
    principals: tuple[str, ...]
    ca_fingerprint: str
    valid_after: int
    valid_before: int
    force_command: str | None = None
    source_address: str = ""
    # The certificate's extensions (``permit-pty``, ``permit-port-forwarding``, ...): absent
    # means not permitted, as in OpenSSH; ``verify-required`` is a critical option.
    extensions: frozenset[str] = frozenset()
    verify_required: bool = False

    def permits(self, extension: str) -> bool:
        """Whether the certificate grants ``extension`` (e.g. ``"permit-pty"``)."""
        return extension in self.extensions

    def describe(self) -> str:
        return f"{self.key_id} (serial {self.serial})"


@dataclass(frozen=True)
class SessionInfo:
    """One authenticated agent connection and the target/login it addressed."""

    session_id: str
    identity: Identity
    target: str
    login: str
    source_address: str


@dataclass(frozen=True)
class ChannelRequest:
    """What the agent asked a session channel to do, before anything reaches the target."""

    kind: ChannelKind
    command: str | None
    term_type: str | None = None
    term_size: tuple[int, int, int, int] = (0, 0, 0, 0)
    term_modes: dict[int, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    subsystem: str | None = None

    @property
    def has_pty(self) -> bool:
        return self.term_type is not None
