"""`bastion mask`: stdin -> stdout filter with the same masker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from masking_corpus import B62, Gen

from bastion.cli import main

BASTION = [sys.executable, "-m", "bastion.cli"]


def _token() -> bytes:
    return ("ghp_" + Gen(31).s(B62, 36)).encode()


def _run(args: list[str], data: bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([*BASTION, "mask", *args], input=data, capture_output=True, cwd=cwd,
                          env=env, timeout=60, check=False)


def test_mask_filters_stdin_to_stdout(tmp_path: Path) -> None:
    """Secrets in stdin come out labelled; other bytes are unchanged."""
    tok = _token()
    res = _run([], b"log line\ntoken " + tok + b" end\nlast", tmp_path)
    assert res.returncode == 0
    assert res.stdout == b"log line\ntoken [MASKED:github-token] end\nlast"


def test_mask_pty_keeps_length(tmp_path: Path) -> None:
    """--pty masks with same-length replacement."""
    tok = _token()
    res = _run(["--pty"], b"token " + tok + b"\n", tmp_path)
    assert res.stdout == b"token " + b"*" * len(tok) + b"\n"


def test_mask_uses_custom_rules_from_config(tmp_path: Path) -> None:
    """--config loads [masking] custom rules, and --counts reports hits per rule on stderr."""
    cfg = tmp_path / "b.toml"
    cfg.write_text('[masking]\n[[masking.rules]]\nid = "corp-token"\nregex = "CORP-[A-Z0-9]{16}"\n'
                   'prefix = "CORP-"\n')
    res = _run(["--config", str(cfg), "--counts"], b"x CORP-ABCDEFGH12345678\n", tmp_path)
    assert res.stdout == b"x [MASKED:corp-token]\n"
    assert b"corp-token\t1" in res.stderr


def test_mask_missing_config_is_a_one_line_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """An explicit --config that does not exist exits 3 with one line on stderr."""
    assert main(["mask", "--config", str(tmp_path / "nope.toml")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("bastion: ") and "not found" in err and err.count("\n") == 1


def test_mask_invalid_rule_is_a_config_error(tmp_path: Path) -> None:
    """A broken custom rule is reported as one line naming the key, exit status 3."""
    cfg = tmp_path / "b.toml"
    cfg.write_text('[masking]\n[[masking.rules]]\nid = "x-y"\nregex = "("\n')
    res = _run(["--config", str(cfg)], b"", tmp_path)
    assert res.returncode == 3  # EXIT_ERROR
    assert res.stderr.decode().startswith("bastion: masking.rules[0].regex: invalid")
