"""With worker processes, agents see the approval link, and it names the supervisor's page.

The workers serve SSH; only the supervisor serves HTTP. A held command told through the real
``ssh`` client must name the page's URL with the port the supervisor actually bound
(``[http] listen = "127.0.0.1:0"``), and that page must answer for the request.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from pathlib import Path

from support.bastion import target_block, write_config
from support.bastion_process import ServeProcess

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

POLICY = """
[policy]
version = 1
default = "review"

[[rules]]
id = "everyday"
action = "allow"
reason = "harmless"
program = ["echo"]

[[rules]]
id = "az-group-delete"
action = "review"
reason = "deletes an Azure resource group"
program = ["az"]
subcommand = ["group delete"]
approvers = ["sre"]
timeout = "120s"
mode = "{mode}"
"""

LINK = re.compile(r"(http://127\.0\.0\.1:(\d+)/approvals/([\w-]+))")


def _start(tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, mode: str) -> ServeProcess:
    (tmp_path / "policy.toml").write_text(POLICY.format(mode=mode))
    extra = '[policy]\nfile = "policy.toml"\n[http]\nlisten = "127.0.0.1:0"\n'
    return ServeProcess.start(write_config(tmp_path, ca, target_block(sshd), extra=extra,
                                           workers=2))


def _page_answers(url: str, request_id: str) -> None:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert request_id in response.read().decode()


def test_deferred_holds_name_the_supervisors_page(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, agent: Agent
) -> None:
    served = _start(tmp_path, ca, sshd, "defer")
    try:
        assert served.http_port
        for i in range(4):  # logins land on either worker
            done = served.ssh(agent, f"az group delete -n rg{i} --yes")
            assert done.returncode == 75, done.stderr
            found = LINK.search(done.stderr.decode())
            assert found is not None, done.stderr
            url, port, request_id = found.groups()
            assert int(port) == served.http_port
            _page_answers(url, request_id)
        assert {e.get("worker") for e in served.events("connection.open")} <= {1, 2}
    finally:
        served.stop()


def test_a_waiting_hold_names_the_page(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget, agent: Agent
) -> None:
    served = _start(tmp_path, ca, sshd, "wait")
    held = subprocess.Popen([*served.ssh_args(agent), "az group delete -n rg --yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert held.stderr is not None
        line = held.stderr.readline().decode()
        assert line.startswith("bastion: held for review as "), line
        found = LINK.search(line)
        assert found is not None, line
        url, port, request_id = found.groups()
        assert int(port) == served.http_port
        _page_answers(url, request_id)
    finally:
        held.kill()
        held.wait()
        served.stop()
