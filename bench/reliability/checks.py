"""After a run: is every command in the audit log with the right decision, every session
recorded and verifying, the audit chain intact? Uses the operator's own commands
(``bastion audit export``, ``bastion audit verify``, ``bastion recordings verify``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.reliability.stack import cli
from bench.reliability.workload import Step

TAG = re.compile(r"\ba\d{3}(?:c\d{2}|s\d)\b")


@dataclass
class Verdict:
    audit_rows: int = 0
    audit_intact: bool = False
    audit_message: str = ""
    command_rows: int = 0
    sessions_started: int = 0
    recordings: int = 0
    recordings_sealed_rows: int = 0
    recordings_ok: int = 0
    lost_rows: int = 0  # commands the agents saw decided without their audit row
    wrong_decisions: int = 0
    unrecorded_sessions: int = 0
    secret_in_recordings: int = 0
    problems: list[str] = field(default_factory=list)


def audit_rows(config: Path) -> list[dict[str, Any]]:
    done = cli(config, "audit", "export", "--format", "jsonl")
    if done.returncode != 0:
        raise RuntimeError(f"audit export failed: {done.stderr.strip()}")
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


def check_run(config: Path, recordings_dir: Path, steps: list[Step]) -> Verdict:
    v = Verdict()
    rows = audit_rows(config)
    v.audit_rows = len(rows)
    verify = cli(config, "audit", "verify")
    v.audit_intact = verify.returncode == 0
    said = (verify.stdout + verify.stderr).strip().splitlines()
    v.audit_message = said[-1] if said else ""
    if not v.audit_intact:
        v.problems.append(f"audit verify: {v.audit_message}")

    by_tag: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["kind"] == "command":
            v.command_rows += 1
            for tag in set(TAG.findall(row["fields"].get("command") or "")):
                by_tag.setdefault(tag, []).append(row)
        elif row["kind"] == "session_start":
            v.sessions_started += 1
        elif row["kind"] == "recording_sealed":
            v.recordings_sealed_rows += 1
    for step in steps:
        found = by_tag.get(step.tag, [])
        if len(found) != 1:
            v.lost_rows += 1
            v.problems.append(f"{step.tag}: {len(found)} audit rows for {step.line!r}")
            continue
        if found[0]["fields"].get("decision") != step.decision:
            v.wrong_decisions += 1
            v.problems.append(
                f"{step.tag}: audited as {found[0]['fields'].get('decision')}, "
                f"expected {step.decision}"
            )
        if step.secret and step.secret in found[0]["fields"].get("command", ""):
            v.problems.append(f"{step.tag}: the secret is in the audit row unmasked")

    casts = sorted(recordings_dir.rglob("*.cast"))
    v.recordings = len(casts)
    verified = cli(config, "recordings", "verify", str(recordings_dir), timeout=1800)
    lines = [line for line in verified.stdout.splitlines() if line.strip()]
    v.recordings_ok = sum(1 for line in lines if " OK " in f" {line} " or "intact: sealed" in line)
    if verified.returncode != 0:
        bad = [line for line in lines if "intact: sealed" not in line]
        v.problems.append(f"recordings verify: {bad[:3] or verified.stderr.strip()[:300]}")
    secrets = {s.secret for s in steps if s.secret}
    for cast in casts:
        text = cast.read_text(errors="replace")
        if any(secret in text for secret in secrets):
            v.secret_in_recordings += 1
    if v.secret_in_recordings:
        v.problems.append(f"{v.secret_in_recordings} recordings hold an unmasked secret")
    return v
