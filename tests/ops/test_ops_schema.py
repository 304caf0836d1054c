"""One schema for `serve` and `check-config` (bastion/schema.py; issue 22, item 1): both accept
every documented section, both refuse a typo naming the key; check-config lists every typo and
an access rule that names no target."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.bastion import target_block, write_config

from bastion.testing.certs import CertificateAuthority
from bastion.testing.sshd import SshdTarget

REPO = Path(__file__).resolve().parents[2]

SECTIONS_SERVE_READS = """
[http]
listen = "127.0.0.1:0"

[interactive]
fallback = "refuse"

[audit]
db = "state/bastion.db"

[[notify]]
type = "webhook"
url = "https://hooks.example.net/bastion"
secret_file = "webhook_secret"
"""


def bastion(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bastion.cli", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def config(tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget) -> Path:
    shutil.copy(REPO / "config" / "policy.toml", tmp_path / "policy.toml")
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "webhook_secret").write_text("s" * 32 + "\n")
    (tmp_path / "webhook_secret").chmod(0o600)
    return write_config(tmp_path, ca, target_block(sshd),
                        extra='[policy]\nfile = "policy.toml"\n' + SECTIONS_SERVE_READS)


def test_check_config_accepts_every_section_serve_accepts(config: Path) -> None:
    checked = bastion("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    for line in ("interactive: fallback refuse", "notify: webhook-0 (webhook)", "audit: database"):
        assert line in checked.stdout, checked.stdout
    # and serve starts with the same file (it stops at once: SIGTERM after "listening")
    served = subprocess.Popen([sys.executable, "-m", "bastion.cli", "serve", "--config",
                               str(config)], stderr=subprocess.PIPE, text=True)
    try:
        assert served.stderr is not None
        for _ in range(200):
            line = served.stderr.readline()
            if '"listening"' in line or not line:
                break
        assert '"listening"' in line, line
    finally:
        served.terminate()
        served.wait(30)


@pytest.mark.parametrize(
    ("old", "new", "key", "hint"),
    [
        ('listen = "127.0.0.1:0"\nhost_key', 'lisen = "127.0.0.1:0"\nhost_key', "server.lisen",
         "listen"),
        ('state_dir = "state"\n', 'state_dir = "state"\nwokers = 2\n', "server.wokers", "workers"),
        ("max_cert_validity", "max_cert_valdity", "auth.max_cert_valdity", "max_cert_validity"),
        ('\nhost = "127.0.0.1"', '\nhots = "127.0.0.1"', "targets[0].hots", "host"),
        ('logins = ["*"]', 'logins = ["*"]\nprincipal = ["x"]', "access[0].principal",
         "principals"),
        ('[http]\nlisten = "127.0.0.1:0"', '[http]\nlisten = "127.0.0.1:0"\npublic_ur = "x"',
         "http.public_ur", "public_url"),
        ('[audit]\ndb', '[audit]\ndatabase = "x"\ndb', "audit.database", None),
        ('[interactive]\n', '[interactive]\nfalback = "review"\n', "interactive.falback", None),
        ('[[notify]]\ntype = "webhook"\n', '[[notify]]\ntype = "webhook"\nchanel = "x"\n',
         "notify[0].chanel", None),
    ],
    ids=["lisen", "wokers", "max_cert_valdity", "target", "access", "http", "audit",
         "interactive", "notify"],
)
def test_a_typo_is_one_line_naming_the_key_in_both(
    config: Path, old: str, new: str, key: str, hint: str | None
) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))
    checked = bastion("check-config", "--config", str(config))
    assert checked.returncode == 1
    fails = [line for line in checked.stderr.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and f"{key}: unknown key" in fails[0], checked.stderr
    if hint:
        assert f"did you mean {hint!r}" in fails[0]
    served = bastion("serve", "--config", str(config))
    assert served.returncode == 3
    last = served.stderr.strip().splitlines()[-1]  # sections a feature parses log a line first
    assert last.startswith("bastion: ") and f"{key}: unknown key" in last, served.stderr
    assert "Traceback" not in served.stderr


def test_check_config_lists_every_typo(config: Path) -> None:
    text = config.read_text().replace('listen = "127.0.0.1:0"\nhost_key',
                                      'lisen = "127.0.0.1:0"\nhost_key', 1)
    config.write_text(text.replace("max_cert_validity", "max_cert_valdity") + "\n[limit]\n")
    checked = bastion("check-config", "--config", str(config))
    fails = [line for line in checked.stderr.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 3, checked.stderr
    assert "server.lisen" in fails[0] and "auth.max_cert_valdity" in fails[1]
    assert "unknown section [limit]" in fails[2]


def test_an_access_rule_naming_no_target_fails(config: Path) -> None:
    text = config.read_text().replace('targets = ["web-*"]', 'targets = ["web-*", "wbe-01"]')
    config.write_text(text)
    checked = bastion("check-config", "--config", str(config))
    assert checked.returncode == 1
    assert "FAIL access[0].targets: 'wbe-01' matches no [[targets]] name" in checked.stderr
