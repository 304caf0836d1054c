"""The one error type of the audit package."""

from __future__ import annotations

from bastion.errors import BastionError


class AuditError(BastionError):
    """The audit log could not be written or read; writing is required, so the session ends."""
