"""Helpers for the approval tests: a broker over a real database file, operators, a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from bastion.approval import ApprovalBroker, ApprovalRequest, ApprovalsConfig
from bastion.audit import AuditStore


class FakeClock:
    """Wall-clock time that tests can move forward (TOTP steps, deadlines)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    db_path: Path
    audit: AuditStore
    broker: ApprovalBroker
    clock: Callable[[], float]
    secrets: dict[str, str] = field(default_factory=dict)

    async def enrol(self, name: str, **kw: Any) -> str:
        op = await self.broker.operators.add(name, **kw)
        self.secrets[name] = op.totp_secret
        return op.totp_secret

    def code(self, name: str) -> str:
        return pyotp.TOTP(self.secrets[name]).at(self.clock())

    async def submit(self, **overrides: Any) -> ApprovalRequest:
        values: dict[str, Any] = {
            "session_id": "sess-1",
            "requester_key_id": "ci-agent-1",
            "requester_serial": 7,
            "principals": ("agents",),
            "target": "web-01",
            "login": "azureuser",
            "channel_kind": "exec",
            "command": "az group delete -n rg-test --yes",
            "units": (("az", "group", "delete", "-n", "rg-test", "--yes"),),
            "rules": ("az-destructive",),
            "approvers": (),
            "approvals_required": 1,
            "timeout": 60.0,
            "mode": "wait",
        }
        values.update(overrides)
        return await self.broker.submit(**values)

    async def approval_rows(self) -> list[dict[str, Any]]:
        rows = await self.audit.query(kinds=("approval",))
        return [r.fields for r in rows]


async def open_env(
    db_path: Path, clock: Callable[[], float], config: ApprovalsConfig | None = None
) -> Env:
    audit = await AuditStore.open(db_path)
    cfg = config or ApprovalsConfig(public_url="https://bastion.test")
    broker = await ApprovalBroker.open(audit.db, audit, cfg, clock=clock)
    return Env(db_path, audit, broker, clock)
