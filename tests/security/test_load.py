"""The load script at CI size: `bench.reliability.load` with 20 agents against `bastion serve` as
a process (its default workers), end to end. The full 200-agent run is
`scripts/reliability.sh`; figures are in docs/security.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_twenty_agents_lose_nothing(tmp_path: Path) -> None:
    """20 agents x 20 exec commands (allow, deny, held and approved on the web page with TOTP)
    and two PTY shells: no unexpected error, every command audited with its decision, every
    session that ran recorded and verifying, the audit chain intact, no secret in a recording,
    and the bastion's process tree not growing from one round to the next."""
    out = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.reliability.load", "--agents", "20", "--operators", "20",
         "--time-limit", "600", "--json", str(out), "--dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )  # fmt: skip
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    check = result["check"]
    assert result["errors"] == 0 and result["warmup_errors"] == 0, result["error_examples"]
    assert check["problems"] == [], check["problems"]
    # two rounds of 20 agents plus 2 warm-up agents; shells: a990, a000, a010, a020, a030
    assert result["commands_total"] == 42 * 20 + 5 * 3
    assert result["shell_sessions"] == 5
    assert check["lost_rows"] == 0 and check["wrong_decisions"] == 0
    assert check["audit_intact"]
    assert check["recordings"] == check["recordings_ok"] == result["sessions_ran"]
    assert result["approvals"] == result["commands"]["review"]
    assert result["memory_steady"], result
    assert done.returncode == 0, done.stdout[-3000:]
