"""`bastion policy check/test` through the real CLI entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bastion.cli import main


def test_check_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    """check exits 0 for allow, 1 for review, 2 for deny, and explains the units."""
    assert main(["policy", "check", "--", "az", "vm", "list"]) == 0
    assert main(["policy", "check", "--", "az group delete -n rg --yes"]) == 1
    assert main(["policy", "check", "--", "rm", "-rf", "/"]) == 2
    out = capsys.readouterr().out
    assert "decision: deny" in out and "rm-catastrophic" in out


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the decision with normalised argv per unit."""
    main(["policy", "check", "--json", "--", "sudo /bin/rm -rf /"])
    data = json.loads(capsys.readouterr().out)
    assert data["decision"] == "deny"
    assert data["units"][0]["argv"] == ["rm", "-rf", "/"]


def test_check_jsonl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--jsonl answers each input line, honours context fields and reports malformed lines."""
    lines = [
        json.dumps({"cmd": "az vm list"}),
        "{not json",
        json.dumps({"cmd": "rm -rf /", "principals": ["agents"], "target": "web-01",
                    "login": "azureuser", "channel": "shell"}),
        json.dumps({"cmd": "ls", "channel": "telnet"}),
        json.dumps({"nocmd": 1}),
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["policy", "check", "--jsonl"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o.get("decision") for o in out] == ["allow", None, "deny", None, None]
    assert out[0]["rules"] == ["az-readonly"]
    assert "error" in out[1] and "error" in out[3] and "error" in out[4]


def test_policy_test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`policy test` passes on the shipped file and fails (exit 1) on a broken example."""
    assert main(["policy", "test"]) == 0
    bad = tmp_path / "p.toml"
    bad.write_text('[[rules]]\nid = "x"\naction = "deny"\nprogram = ["rm"]\nmatch = ["ls"]\n')
    assert main(["policy", "test", "--policy", str(bad)]) == 1
    assert "FAIL rule x" in capsys.readouterr().out


def test_check_without_command_is_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    """check with nothing to check is a one-line error (exit 3, never 2: that is deny)."""
    assert main(["policy", "check"]) == 3
    assert "bastion: policy check" in capsys.readouterr().err
