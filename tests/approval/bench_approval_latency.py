"""How long a waiting relay takes to see a decision made on another database connection.

Run: .venv/bin/python tests/approval/bench_approval_latency.py [ROUNDS]
A second AuditStore/ApprovalBroker on its own SQLite connection stands in for the CLI process
(the same path `bastion approvals approve` takes); prints min/median/max of decide -> wait().
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyotp

from bastion.approval import ApprovalBroker, ApprovalsConfig
from bastion.audit import AuditStore


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bastion.db"
        cfg = ApprovalsConfig()
        relay_audit = await AuditStore.open(db)
        relay = await ApprovalBroker.open(relay_audit.db, relay_audit, cfg)
        cli_audit = await AuditStore.open(db)
        cli = await ApprovalBroker.open(cli_audit.db, cli_audit, cfg)
        ops = [await cli.operators.add(f"op{i}") for i in range(rounds)]  # one code per operator
        delays = []
        for op in ops:
            req = await relay.submit(
                session_id="s", requester_key_id="agent", requester_serial=1, principals=(),
                target="vm", login="u", channel_kind="exec", command="x", units=(("x",),),
                rules=("r",), timeout=60,
            )  # fmt: skip
            waiter = asyncio.create_task(relay.wait(req.id))
            await asyncio.sleep(0.05 + (len(delays) % 4) * 0.05)  # land at varied poll phases
            await cli.decide(req.id, operator=op.name, totp=pyotp.TOTP(op.totp_secret).now(),
                             approve=True)  # fmt: skip
            decided = time.monotonic()
            outcome = await waiter
            delays.append(time.monotonic() - decided)
            assert outcome.state == "approved"
        await cli_audit.close()
        await relay_audit.close()
    ms = sorted(d * 1000 for d in delays)
    print(
        f"rounds={rounds} decide->wait() ms: min={ms[0]:.1f} "
        f"median={statistics.median(ms):.1f} max={ms[-1]:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
