"""Measure RevocationList.is_revoked: steady state, and right after another process revokes.

Run: .venv/bin/python tests/identity/bench_identity_revocation.py [N_REVOKED]
(not collected by pytest; prints microseconds per call)
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bastion.identity.revocation import RevocationList

revoked = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
with tempfile.TemporaryDirectory() as tmp:
    db = Path(tmp) / "identity.db"
    rl = RevocationList.open(db)
    writer = sqlite3.connect(db)
    writer.executemany(
        "INSERT INTO revocations (serial, reason, revoked_at) VALUES (?, 'bench', 0)",
        [(i,) for i in range(revoked)],
    )
    writer.commit()
    n = 100_000
    rl.is_revoked(1, "x/y")
    start = time.perf_counter()
    for i in range(n):
        rl.is_revoked(revoked + i, "tenant/object (name)")
    steady = (time.perf_counter() - start) / n * 1e6
    rounds = 200
    reload_total = 0.0
    for i in range(rounds):
        writer.execute(
            "INSERT INTO revocations (serial, reason, revoked_at) VALUES (?, 'bench', 0)",
            (10**9 + i,),
        )
        writer.commit()
        start = time.perf_counter()
        assert rl.is_revoked(10**9 + i, "x/y")
        reload_total += time.perf_counter() - start
    print(
        f"{revoked} revocations: steady is_revoked {steady:.1f} us/call; "
        f"first call after a revocation commit {reload_total / rounds * 1e6:.0f} us"
    )
    rl.close()
