"""The `bastion` command itself, as a process (issue 22, item 12): where it finds the config,
``--version``, defaults in ``--help``, a closed output pipe, exit statuses, ``prune`` ages and
an unknown ``audit --kind``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.bastion import target_block, write_config

from bastion import config as config_module
from bastion.audit.store import AuditStore
from bastion.cli import EXIT_DENY, EXIT_ERROR, EXIT_PIPE, EXIT_USAGE
from bastion.testing.certs import CertificateAuthority
from bastion.testing.sshd import SshdTarget

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def bastion(*args: str, cwd: Path, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "BASTION_CONFIG"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "bastion.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=full, timeout=120, input=stdin)


@pytest.fixture
def configured(tmp_path: Path, sshd: SshdTarget, ca: CertificateAuthority) -> Path:
    """A config whose audit database exists, with one row of a kind only the log knows."""
    directory = tmp_path / "site"
    directory.mkdir()
    config = write_config(directory, ca, target_block(sshd),
                          extra=f'[policy]\nfile = "{POLICY}"\n')

    async def seed() -> None:
        (directory / "state").mkdir()
        store = await AuditStore.open(directory / "state" / "bastion.db")
        await store.record("command", target="web-01", command="echo hi")
        await store.record("command_exit", target="web-01", exit_status=0)
        await store.close()

    asyncio.run(seed())
    return config


def test_version(tmp_path: Path) -> None:
    result = bastion("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "bastion 0.1.0"


def test_bastion_config_is_the_default_after_config(tmp_path: Path, configured: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = bastion("audit", "verify", cwd=elsewhere, env={"BASTION_CONFIG": str(configured)})
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("audit log intact: 2 rows")
    # --config wins over the variable
    wins = bastion("audit", "verify", "--config", str(configured), cwd=elsewhere,
                   env={"BASTION_CONFIG": str(tmp_path / "nope.toml")})
    assert wins.returncode == 0, wins.stderr
    named = bastion("audit", "verify", cwd=elsewhere,
                    env={"BASTION_CONFIG": str(tmp_path / "nope.toml")})
    assert named.returncode == EXIT_ERROR
    assert named.stderr == f"bastion: {tmp_path / 'nope.toml'}: file not found\n"


def test_without_a_config_the_error_says_where_it_looked(tmp_path: Path) -> None:
    if config_module.SYSTEM_CONFIG_PATH.exists():
        pytest.skip("this machine has /etc/bastion/bastion.toml")
    result = bastion("approvals", "list", cwd=tmp_path)
    assert result.returncode == EXIT_ERROR
    assert result.stderr == "bastion: /etc/bastion/bastion.toml: file not found\n"


def test_the_system_config_comes_before_the_checkout_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "etc" / "bastion.toml"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG_PATH", system)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "bastion.toml").write_text("")
    assert config_module.default_config_path({}) == Path("config/bastion.toml")
    system.parent.mkdir()
    system.write_text("")
    assert config_module.default_config_path({}) == system
    assert config_module.default_config_path({"BASTION_CONFIG": "/x.toml"}) == Path("/x.toml")


def test_help_shows_defaults(tmp_path: Path) -> None:
    serve = bastion("serve", "--help", cwd=tmp_path).stdout
    assert "(default: info)" in " ".join(serve.split())
    assert "$BASTION_CONFIG, else /etc/bastion/bastion.toml" in " ".join(serve.split())
    demo = " ".join(bastion("demo", "--help", cwd=tmp_path).stdout.split())
    assert "(default: 2222)" in demo and "(default: 8080;" in demo
    tail = " ".join(bastion("audit", "tail", "--help", cwd=tmp_path).stdout.split())
    assert "(default 20)" in tail and "(default: 20)" not in tail  # never twice


def test_exit_statuses_are_distinct(tmp_path: Path) -> None:
    deny = bastion("policy", "check", "--policy", str(POLICY), "--", "rm", "-rf", "/",
                   cwd=tmp_path)
    assert deny.returncode == EXIT_DENY, deny.stdout
    missing = bastion("policy", "check", "--policy", str(tmp_path / "none.toml"), "--", "ls",
                      cwd=tmp_path)
    assert missing.returncode == EXIT_ERROR
    assert missing.stderr.startswith("bastion: ") and missing.stderr.count("\n") == 1
    usage = bastion("policy", "check", "--no-such-option", cwd=tmp_path)
    assert usage.returncode == EXIT_USAGE
    assert "unrecognized arguments: --no-such-option" in usage.stderr


def test_a_closed_output_pipe_is_quiet(tmp_path: Path) -> None:
    """`bastion policy check --jsonl | head -1`: no BrokenPipe traceback, exit 141."""
    lines = "".join(json.dumps({"cmd": f"echo {i}"}) + "\n" for i in range(4000))
    producer = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "policy", "check", "--policy", str(POLICY),
         "--jsonl"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    head = subprocess.Popen(["head", "-1"], stdin=producer.stdout, stdout=subprocess.PIPE)
    assert producer.stdout is not None and producer.stdin is not None
    producer.stdout.close()  # head holds the only read end
    stdin = producer.stdin

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError):
            stdin.write(lines.encode())
            stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    first, _ = head.communicate(timeout=60)
    assert json.loads(first)["decision"] == "allow"
    assert producer.wait(60) == EXIT_PIPE
    writer.join(10)
    assert producer.stderr is not None
    assert producer.stderr.read() == b""


def test_prune_takes_an_age_with_a_unit(tmp_path: Path, configured: Path) -> None:
    week = bastion("recordings", "prune", "--older-than", "7d", "--config", str(configured),
                   cwd=tmp_path)
    assert week.returncode == 0, week.stderr
    assert "pruned 0 recordings older than 7 days" in week.stderr
    hours = bastion("recordings", "prune", "--older-than", "36h", "--dry-run", "--config",
                    str(configured), cwd=tmp_path)
    assert hours.returncode == 0, hours.stderr
    days = bastion("recordings", "prune", "--older-than", "90", "--config", str(configured),
                   cwd=tmp_path)
    assert "older than 90 days" in days.stderr
    bad = bastion("recordings", "prune", "--older-than", "7x", "--config", str(configured),
                  cwd=tmp_path)
    assert bad.returncode == EXIT_USAGE
    assert "argument --older-than" in bad.stderr and "Traceback" not in bad.stderr


def test_an_unknown_audit_kind_is_an_error(tmp_path: Path, configured: Path) -> None:
    for command in ("query", "tail", "export"):
        bad = bastion("audit", command, "--kind", "comand", "--config", str(configured),
                      cwd=tmp_path)
        assert bad.returncode == EXIT_ERROR, bad.stdout
        assert bad.stderr.startswith("bastion: --kind: unknown kind 'comand' (known: ")
        assert bad.stderr.count("\n") == 1
    found = bastion("audit", "query", "--kind", "command_exit", "--json", "--config",
                    str(configured), cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert [json.loads(line)["kind"] for line in found.stdout.splitlines()] == ["command_exit"]
    none = bastion("audit", "query", "--kind", "approval", "--config", str(configured),
                   cwd=tmp_path)
    assert none.returncode == 0 and none.stdout == ""  # documented, just not written yet
