"""The audit seam: the identity package reports issuance and refusals through this Protocol.

The bastion wires it to its audit store (whose ``record`` has this shape). Events:
``cert_issued`` (serial, key_id, principals, valid_after, valid_before, issuer, subject,
source_address) and ``cert_refused`` (reason, status, source_address, issuer when known).
The token itself is never passed.
"""

from __future__ import annotations

from typing import Any, Protocol


class AuditSink(Protocol):
    async def record(
        self,
        kind: str,
        *,
        session_id: str | None = None,
        identity: str | None = None,
        target: str | None = None,
        login: str | None = None,
        **fields: Any,
    ) -> int:
        """Append one event and return its id; raise if it could not be recorded."""
        ...
