"""The notifier seam: anything that can deliver an approval event somewhere."""

from __future__ import annotations

from typing import Protocol

from bastion.notify.config import Scope
from bastion.notify.event import NotifyEvent


class DeliveryError(Exception):
    """One delivery attempt failed; the message (one line, no secrets) is shown to operators."""


class Notifier(Protocol):
    """A configured ``[[notify]]`` block; the hub calls ``deliver`` with retries and timeouts."""

    name: str
    scope: Scope
    timeout: float  # per attempt
    retries: int

    async def deliver(self, event: NotifyEvent) -> None:
        """Deliver once; raise DeliveryError (or any exception) to have the hub retry."""
        ...

    async def close(self) -> None: ...
