"""Audit store: hash-chained rows in the shared SQLite database."""

from bastion.audit.db import Database
from bastion.audit.errors import AuditError
from bastion.audit.store import KINDS, AuditRow, AuditStore
from bastion.audit.verify import ChainReport, verify_chain

__all__ = [
    "KINDS",
    "AuditError",
    "AuditRow",
    "AuditStore",
    "ChainReport",
    "Database",
    "verify_chain",
]
