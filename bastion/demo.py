"""``bastion demo``: a working local bastion in front of a local demo target, in one command.

Creates ``demo/`` with a user CA, an agent certificate, an upstream key and a config that uses
the shipped policy; starts the system's OpenSSH sshd on loopback as the target (or, where no sshd
can be had, a small embedded target bound to 127.0.0.1); then serves the bastion in the
foreground, with its HTTP server on loopback (approval pages, ``/healthz``, ``/metrics``), and
prints the agent's ``ssh`` command and the operator's side. Ctrl-C stops both.

The folder is only ever deleted when the demo made it: it writes a marker file
(``MARKER``) into every folder it creates and refuses a non-empty folder without one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import asyncssh

from bastion import shipped
from bastion.app import build_runtime, serve
from bastion.config import load_config
from bastion.errors import BastionError
from bastion.logs import setup_logging
from bastion.testing.certs import Agent, CertificateAuthority, keygen
from bastion.testing.sshd import SSHD, SshdTarget, free_port, start_sshd


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run a local bastion in front of a local demo target"
    )
    p.add_argument(
        "--dir",
        default="demo",
        help="folder for the demo's keys and config (default: %(default)s); remade on each run,"
        " but only if an earlier demo made it",
    )
    p.add_argument(
        "--port", type=int, default=2222, help="SSH port on 127.0.0.1 (default: %(default)s)"
    )
    p.add_argument(
        "--http-port",
        type=int,
        default=8080,
        help="HTTP port on 127.0.0.1 for the approval page, /healthz and /metrics"
        " (default: %(default)s; 0 picks a free one)",
    )
    p.set_defaults(func=_demo)


MARKER = ".bastion-demo"
_MARKER_TEXT = "This folder was made by `bastion demo`, which deletes and remakes it on each run.\n"


def prepare_dir(directory: Path) -> None:
    """Make ``directory`` fresh: delete it only if a demo made it (the marker), else refuse."""
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise BastionError(f"demo: {directory} is not a folder; choose another --dir")
    if directory.exists():
        marker = directory / MARKER
        if marker.is_file() and not marker.is_symlink():
            shutil.rmtree(directory)
        elif any(directory.iterdir()):
            raise BastionError(
                f"demo: {directory} exists and was not made by bastion demo; refusing to delete"
                " it (choose another --dir, or remove it yourself)"
            )
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    (directory / MARKER).write_text(_MARKER_TEXT)


def command_path() -> str:
    """How the user can run this bastion again: ``bastion`` if that is what PATH finds, else
    the path of the script that ran (``.venv/bin/bastion``), else ``python -m bastion.cli``."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "bastion" and os.path.isfile(argv0):
        path = os.path.abspath(argv0)
        found = shutil.which("bastion")
        if found is not None and os.path.samefile(found, path):
            return "bastion"
        relative = os.path.relpath(path)
        return shlex.quote(path if relative.startswith("..") else relative)
    return f"{shlex.quote(sys.executable)} -m bastion.cli"


class EmbeddedTarget:
    """A minimal SSH target on 127.0.0.1 for machines without sshd: runs commands with bash."""

    def __init__(self, directory: Path, client_key: Path) -> None:
        self.directory = directory
        self.client_key = client_key
        self.host_key = keygen(directory / "embedded_host_key")
        self.port = free_port()
        self.login = os.environ.get("USER", "demo")
        self._server: asyncssh.SSHAcceptor | None = None

    @property
    def host_public_key(self) -> str:
        return Path(f"{self.host_key}.pub").read_text().strip()

    async def start(self) -> None:
        async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
            command = process.command or "exec bash -i"
            local = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await process.redirect(stdin=local.stdin, stdout=local.stdout, stderr=local.stderr)
            process.exit(await local.wait())

        self._server = await asyncssh.listen(
            "127.0.0.1",
            self.port,
            server_host_keys=[str(self.host_key)],
            authorized_client_keys=f"{self.client_key}.pub",
            process_factory=handle,
            encoding=None,
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()


def _write_config(
    directory: Path, port: int, http_port: int, target: SshdTarget | EmbeddedTarget
) -> Path:
    config = directory / "bastion.toml"
    config.write_text(
        f"""# Generated by `bastion demo`. See config/bastion.example.toml for every option.
[server]
listen = "127.0.0.1:{port}"
host_key = "ssh_host_ed25519_key"
state_dir = "state"

[auth]
trusted_user_ca_keys = ["user_ca.pub"]
max_cert_validity = "24h"

[policy]
file = "{shipped.policy_path()}"

[http]
listen = "127.0.0.1:{http_port}"

[[targets]]
name = "web-01"
host = "127.0.0.1"
port = {target.port}
login = "{target.login}"
host_key = "{target.host_public_key}"
identity_file = "upstream_ed25519"
labels = {{ env = "demo" }}

[[access]]
principals = ["agents"]
targets = ["web-*"]
logins = ["{target.login}"]
"""
    )
    return config


def _demo(args: argparse.Namespace) -> int:
    setup_logging("info")
    directory = Path(args.dir).absolute()
    prepare_dir(directory)
    ca = CertificateAuthority.create(directory)
    # The agent's key and certificate: demo/agent and demo/agent-cert.pub.
    Agent.create(directory, ca, principals="agents", key_id="demo-agent", validity="-5m:+12h")
    upstream_key = keygen(directory / "upstream_ed25519")
    target: SshdTarget | EmbeddedTarget
    if Path(SSHD).exists():
        target = start_sshd(directory / "target", client_key=upstream_key)
    else:
        target = EmbeddedTarget(directory, upstream_key)
    try:  # from here on, a failure (a bad port, a config error) must not leave sshd running
        _run(directory, args.port, args.http_port, target)
    finally:
        if isinstance(target, SshdTarget):
            target.stop()
    return 0


def _run(
    directory: Path, port: int, http_port: int, target: SshdTarget | EmbeddedTarget
) -> None:
    config = load_config(_write_config(directory, port, http_port, target))
    runtime = build_runtime(config)

    def ready(address: tuple[str, int]) -> None:
        host_pub = Path(f"{config.server.host_key}.pub").read_text().strip()
        known = directory / "known_hosts"
        known.write_text(f"[127.0.0.1]:{address[1]} {host_pub}\n")
        rel = os.path.relpath(directory)
        rel = shlex.quote(str(directory) if rel.startswith("..") else rel)
        cfg = f"{rel}/bastion.toml"
        bastion = command_path()
        assert runtime.http is not None  # the demo config has [http]
        web = f"http://127.0.0.1:{runtime.http.address[1]}"
        print(
            "\nThe bastion is running in front of a local demo target.\n\n"
            "The agent's side. Try:\n\n"
            f"  ssh -p {address[1]} -i {rel}/agent -o CertificateFile={rel}/agent-cert.pub"
            f" -o UserKnownHostsFile={rel}/known_hosts web-01@127.0.0.1 'echo hi; exit 3'\n\n"
            "Try 'az group delete -n rg --yes' too: the gate holds it for an operator and\n"
            f"prints a link to its approval page ({web}/approvals/ID).\n\n"
            "The operator's side (in another terminal):\n\n"
            "  enrol once (scan the QR code with an authenticator app):\n"
            f"    {bastion} operators add alice --group sre --config {cfg}\n"
            "  then approve on the page the link names, or here (CODE from the app):\n"
            f"    {bastion} approvals list --config {cfg}\n"
            f"    {bastion} approvals approve ID --operator alice --totp CODE --config {cfg}\n"
            f"  health: {web}/healthz   readiness: {web}/readyz   metrics: {web}/metrics\n"
            f"  audit:  {bastion} audit tail --config {cfg}\n\n"
            "Ctrl-C stops.\n",
            file=sys.stderr,
            flush=True,
        )

    async def run() -> None:
        if isinstance(target, EmbeddedTarget):
            await target.start()
        try:
            await serve(runtime, ready=ready)
        finally:
            target.stop()

    asyncio.run(run())
