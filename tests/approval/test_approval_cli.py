"""``bastion operators`` and ``bastion approvals`` through the real CLI entry point and database."""

from __future__ import annotations

import argparse
import asyncio
import json
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from approval_env import Env, open_env

from bastion.approval.cli import register
from bastion.cli import main


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def _secret_from(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


async def _enrol(config_file: Path, capsys: pytest.CaptureFixture[str], name: str) -> str:
    assert await _cli("operators", "add", name, "--group", "sre", "--config", str(config_file)) == 0
    return _secret_from(capsys.readouterr().out.splitlines()[0])


async def _env(config_file: Path) -> Env:
    return await open_env(config_file.parent / "state" / "bastion.db", time.time)


def test_register_adds_both_groups() -> None:
    """register() adds `operators` and `approvals` with their actions to a fresh parser."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["approvals", "approve", "X", "--operator", "a", "--totp", "1"])
    assert callable(args.func) and args.config == "config/bastion.toml"
    assert callable(parser.parse_args(["operators", "list"]).func)


async def test_operators_add_prints_uri_then_qr(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """operators add prints an otpauth:// URI first, then a terminal QR code; DB is 0600."""
    cfg = ("--config", str(config_file))
    assert (
        await _cli("operators", "add", "alice", "--group", "sre", "--email", "a@x.test", *cfg) == 0
    )
    out = capsys.readouterr().out
    first, *rest = out.splitlines()
    assert first.startswith("otpauth://totp/bastion:alice?")
    secret = _secret_from(first)
    assert len(secret) >= 32 and pyotp.TOTP(secret).now().isdigit()
    assert sum("█" in line or "▄" in line for line in rest) >= 10
    db = config_file.parent / "state" / "bastion.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert await _cli("operators", "list", "--json", *cfg) == 0
    listed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert listed[0]["name"] == "alice" and listed[0]["groups"] == ["sre"]
    assert secret not in json.dumps(listed)
    assert await _cli("operators", "add", "alice", *cfg) == 3
    assert "already exists" in capsys.readouterr().err
    assert await _cli("operators", "add", "Bad Name", *cfg) == 3
    assert "invalid operator name" in capsys.readouterr().err
    assert await _cli("operators", "remove", "alice", *cfg) == 0
    assert await _cli("operators", "remove", "alice", *cfg) == 3
    assert "no operator named 'alice'" in capsys.readouterr().err


async def test_approvals_list_show_approve(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """approvals list/show display a pending request; approve with a code approves it."""
    secret = await _enrol(config_file, capsys, "alice")
    env = await _env(config_file)
    try:
        req = await env.submit(command="az group delete -n rg1 --yes \u202e", approvers=("sre",))
    finally:
        await env.audit.close()
    cfg = ("--config", str(config_file))
    assert await _cli("approvals", "list", *cfg) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(req.id) and "pending" in line and "az-destructive" in line
    assert await _cli("approvals", "show", req.id.lower(), *cfg) == 0
    shown = capsys.readouterr().out
    assert "\\u202e" in shown and "\u202e" not in shown
    assert f"https://bastion.test/approvals/{req.id}" in shown
    code = pyotp.TOTP(secret).now()
    cmd = ("approvals", "approve", req.id, "--operator", "alice", "--totp", code, *cfg)
    assert await _cli(*cmd, "--reason", "ticket 42") == 0
    assert f"{req.id}: approved by alice" in capsys.readouterr().out
    assert await _cli("approvals", "show", req.id, "--json", *cfg) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "approved" and data["decisions"][0]["reason"] == "ticket 42"
    assert await _cli("approvals", "list", "--json", "--all", *cfg) == 0
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == [req.id]


async def test_approvals_deny_and_errors_are_one_line(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """deny closes a request; wrong codes and bad ids fail with one line and status 2."""
    secret = await _enrol(config_file, capsys, "bob")
    env = await _env(config_file)
    try:
        req = await env.submit()
    finally:
        await env.audit.close()
    cfg = ("--config", str(config_file))
    right = pyotp.TOTP(secret).now()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    assert await _cli("approvals", "deny", req.id, "--operator", "bob", "--totp", wrong, *cfg) == 3
    err = capsys.readouterr().err
    assert err == "bastion: unknown operator or wrong TOTP code\n"
    assert await _cli("approvals", "deny", req.id, "--operator", "bob", "--totp", right, *cfg) == 0
    assert f"{req.id}: denied by bob" in capsys.readouterr().out
    assert await _cli("approvals", "show", "nope", *cfg) == 3
    assert capsys.readouterr().err.startswith("bastion: not a request id: 'nope'")
    assert await _cli("approvals", "list", "--config", str(config_file.parent / "missing")) == 3
    assert "file not found" in capsys.readouterr().err


async def test_approvals_list_and_show_escape_the_key_id(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CA controls the key id: ANSI escapes, CR/LF and bidi controls in it are printed as
    visible escapes, so a key id cannot clear the screen, forge a line or hide text."""
    await _enrol(config_file, capsys, "alice")
    hostile = "ci\x1b[2J\x1b]0;owned\x07\r\nabcd-fake  approved by alice\u202e"
    env = await _env(config_file)
    try:
        req = await env.submit(requester_key_id=hostile, principals=("agents\x1b[31m",))
    finally:
        await env.audit.close()
    cfg = ("--config", str(config_file))
    assert await _cli("approvals", "list", *cfg) == 0
    listed = capsys.readouterr().out
    assert await _cli("approvals", "show", req.id, *cfg) == 0
    shown = capsys.readouterr().out
    for out in (listed, shown):
        assert "\x1b" not in out and "\r" not in out and "\x07" not in out and "\u202e" not in out
        assert "ci\\x1b[2J\\x1b]0;owned\\x07\\r\\nabcd-fake" in out
    assert len(listed.splitlines()) == 1  # the key id's newline did not add a line
    assert "agents\\x1b[31m" in shown
