"""The audit rows a real session writes, checked against docs/audit.md's field tables.

A bastion with the shipped policy, the real ssh client, operators deciding with the real CLI,
rows read straight from the SQLite file: a held command's ``command`` row carries no exit
status, its ``hold_outcome`` row says how the hold ended, an approved command's
``command_exit`` says how it ran, a refused login is one ``auth_failure`` row, and every kind
and field in those rows (and every kind the code writes) is documented.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp
import pytest
from support.bastion import RunningBastion, start_bastion, target_block, write_config

from bastion.app import build_runtime
from bastion.audit import KINDS
from bastion.hooks import EXIT_DENIED
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "config" / "policy.toml"
DOC = ROOT / "docs" / "audit.md"
HELD = "az group delete -n rg --yes; echo ran-$((6*7))"
# Documented fields this session cannot write: a second approver's tally, a batch decided on
# the list page, the page's guessing alarm (each has its own tests in tests/approval/).
NOT_IN_SCENARIO = {"approval": {"approvals", "batch", "scope", "key", "failures", "source"}}


def documented() -> dict[str, set[str]]:
    """``kind -> fields`` from the table under "## Kinds and fields" (column two: names)."""
    text = DOC.read_text().split("## Kinds and fields", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        kind = cells[0].strip("`")
        names = {n.strip().strip("`") for n in cells[1].split(",") if n.strip() not in ("", "–")}
        table[kind] = names
    return table


def rows(db: Path) -> list[tuple[str, dict[str, Any]]]:
    conn = sqlite3.connect(db)
    try:
        found = conn.execute("SELECT kind, fields FROM audit_log ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(str(k), dict(json.loads(f))) for k, f in found]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def held_then(
    running: RunningBastion, agent: Agent, decide: Callable[[str], None]
) -> subprocess.CompletedProcess[bytes]:
    """Run HELD through the real ssh client; call ``decide(request_id)`` once it is held."""
    proc = subprocess.Popen(
        [*running.ssh_args(agent, "web-01"), HELD],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    request_id = line.split(" as ", 1)[1].split()[0]
    decider = threading.Thread(target=decide, args=(request_id,))
    decider.start()
    out, err = proc.communicate(timeout=60)
    decider.join(60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, line.encode() + err)


@pytest.fixture(scope="module")
def session_rows(
    tmp_path_factory: pytest.TempPathFactory, sshd: SshdTarget, ca: CertificateAuthority,
    agent: Agent,
) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    directory = tmp_path_factory.mktemp("auditrows")
    config = write_config(directory, ca, target_block(sshd), extra=f'[policy]\nfile = "{POLICY}"\n')
    enrolled = cli(config, "operators", "add", "rows-op", "--group", "sre")
    assert enrolled.returncode == 0, enrolled.stderr
    totp = pyotp.parse_uri(enrolled.stdout.splitlines()[0])
    used: list[str] = []

    def code() -> str:  # one code per 30 s step: wait for a fresh one
        for _ in range(70):
            now = totp.now()
            if now not in used:
                used.append(now)
                return now
            time.sleep(0.5)
        raise AssertionError("no fresh TOTP code")

    running = start_bastion(config, build_runtime)
    try:
        assert running.ssh(agent, "web-01", "echo hi").returncode == 0
        assert running.ssh(agent, "web-01", "rm -rf /").returncode != 0
        approved = held_then(
            running, agent,
            lambda rid: cli(config, "approvals", "approve", rid, "--operator", "rows-op",
                            "--totp", code()),
        )  # fmt: skip
        assert approved.returncode == 0 and b"ran-42" in approved.stdout, approved.stderr
        denied = held_then(
            running, agent,
            lambda rid: cli(config, "approvals", "deny", rid, "--operator", "rows-op",
                            "--totp", code()),
        )  # fmt: skip
        assert denied.returncode == 77, denied.stderr
        expired = Agent.create(directory / "expired", ca, key_id="expired-agent",
                               validity="-2h:-1h")  # fmt: skip
        refused = running.ssh(expired, "web-01", "echo hi")
        assert refused.returncode == 255 and b"certificate has expired" in refused.stderr
        sftp = running.ssh(agent, "web-01", "sftp", "-s")  # a subsystem: a refusal row
        assert sftp.returncode == 1, sftp.stderr
        time.sleep(1.0)  # audit_later rows and recording seals are written after the close
    finally:
        running.stop()
    return rows(directory / "state" / "bastion.db")


def test_a_held_command_row_has_no_exit_status_and_its_outcome_is_a_row(
    session_rows: list[tuple[str, dict[str, Any]]],
) -> None:
    held = [f for k, f in session_rows if k == "command" and f["decision"] == "review"]
    assert len(held) == 2 and all(f["exit_status"] is None for f in held)
    denied_cmd = [f for k, f in session_rows if k == "command" and f["decision"] == "deny"]
    assert denied_cmd and denied_cmd[0]["exit_status"] == EXIT_DENIED
    outcomes = [f for k, f in session_rows if k == "hold_outcome"]
    assert [o["outcome"] for o in outcomes] == ["approved", "denied"]
    assert outcomes[0]["exit_status"] is None and outcomes[1]["exit_status"] == 77
    assert all(re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", str(o["request"])) for o in outcomes)
    assert "denied by rows-op" in outcomes[1]["reason"]
    exits = [f for k, f in session_rows if k == "command_exit"]
    # echo hi and the approved command ran and exited 0; nothing else reached the target
    assert [e["exit_status"] for e in exits] == [0, 0]
    kinds = [k for k, _ in session_rows]
    i = kinds.index("hold_outcome")
    assert "command_exit" in kinds[i:], "the approved command's exit follows its hold"


def test_a_refused_login_is_one_row_naming_what_was_refused(
    session_rows: list[tuple[str, dict[str, Any]]],
) -> None:
    failures = [f for k, f in session_rows if k == "auth_failure"]
    assert len(failures) == 1, failures
    row = failures[0]
    assert row["reason"] == "certificate has expired"
    assert row["key_id"] == "expired-agent" and isinstance(row["serial"], int)
    assert row["requested_target"] == "web-01"
    # the ssh client offered the certificate and then the plain key behind it
    assert [r["key"] for r in row["refused"]] == ["certificate", "plain key"]


def test_documented_fields_match_the_rows(session_rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Every kind in the rows is documented with exactly the fields its rows carry."""
    table = documented()
    seen: dict[str, set[str]] = {}
    for kind, fields in session_rows:
        seen.setdefault(kind, set()).update(fields)
    assert {"session_start", "session_end", "command", "hold_outcome", "command_exit",
            "approval", "auth_failure", "refusal", "recording_sealed"} <= set(seen)  # fmt: skip
    for kind, fields in seen.items():
        assert kind in table, f"kind {kind!r} is not documented in docs/audit.md"
        assert fields == table[kind] - NOT_IN_SCENARIO.get(kind, set()), (
            f"{kind}: undocumented {sorted(fields - table[kind])}, "
            f"documented but never written {sorted(table[kind] - fields)}"
        )


def test_every_kind_the_code_writes_is_documented() -> None:
    """Kinds are literals at their call sites; each one has a row in the table."""
    pattern = re.compile(
        r"(?:audit_later|audit_row|\.record|fx\.audit|host\.audit)\(\s*\"([a-z][a-z0-9_]*)\""
    )
    written = {
        m.group(1)
        for path in (ROOT / "bastion").rglob("*.py")
        for m in pattern.finditer(path.read_text())
    }
    assert {"command", "auth_failure", "hold_outcome", "shell_command_finished"} <= written
    missing = written - set(documented())
    assert not missing, f"kinds written but not documented in docs/audit.md: {sorted(missing)}"
    assert set(documented()) == KINDS  # what `audit query --kind` accepts


def test_expired_and_abandoned_holds_are_rows(
    tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority, agent: Agent
) -> None:
    """A hold nobody decides is an ``expired`` row with the agent's status 78; an agent that
    goes away mid-hold leaves an ``abandoned`` row; neither command row has an exit status."""
    policy = tmp_path / "policy.toml"  # the shipped policy, with a 3 s hold on az group delete
    shipped = POLICY.read_text()
    rule = shipped.index('id = "az-group-delete"')
    end = shipped.index("[[rules]]", rule)
    policy.write_text(
        shipped[:rule] + shipped[rule:end].replace('timeout = "15m"', 'timeout = "3s"')
        + shipped[end:]
    )
    extra = f'[policy]\nfile = "{policy}"\n'
    config = write_config(tmp_path, ca, target_block(sshd), extra=extra)
    running = start_bastion(config, build_runtime)
    try:
        expired = running.ssh(agent, "web-01", HELD)
        assert expired.returncode == 78, expired.stderr
        proc = subprocess.Popen(
            [*running.ssh_args(agent, "web-01"), HELD],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        assert b"held for review as" in proc.stderr.readline()
        proc.kill()
        proc.wait(10)
        for _ in range(50):  # the bastion notices the closed connection; bounded wait
            found = [f for k, f in rows(tmp_path / "state" / "bastion.db") if k == "hold_outcome"]
            if len(found) == 2:
                break
            time.sleep(0.1)
    finally:
        running.stop()
    written = rows(tmp_path / "state" / "bastion.db")
    outcomes = [f for k, f in written if k == "hold_outcome"]
    assert [(o["outcome"], o["exit_status"]) for o in outcomes] == [
        ("expired", 78), ("abandoned", None)
    ]  # fmt: skip
    assert outcomes[1]["reason"] == "the agent closed the channel"
    held = [f for k, f in written if k == "command" and f["decision"] == "review"]
    assert len(held) == 2 and all(f["exit_status"] is None for f in held)
    assert not [f for k, f in written if k == "command_exit"]  # neither reached the target
