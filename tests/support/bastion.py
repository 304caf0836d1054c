"""The bastion under test, on a free loopback port, and the real ssh client to reach it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.app import Runtime, build_runtime, serve
from bastion.config import Config, load_config
from bastion.hooks import AllowAllGate, OutputFilter
from bastion.masking import load_masking_config
from bastion.ops.limits import Limits
from bastion.recording import RecordingStore, parse_recording_config
from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

# Every test agent connects from 127.0.0.1, and refusal tests fail logins on purpose: the
# harness raises the per-address failed-login rate so one test cannot lock out the next
# (tests/security/test_auth_abuse.py exercises the real limit).
TEST_LIMITS = Limits(auth_failures_per_minute=1000, max_sessions_per_identity=1000)


def bare_runtime(config: Config) -> Runtime:
    """The relay alone: the gate allows everything, nothing is recorded (data-path tests)."""
    return Runtime(config=config, gate=AllowAllGate(), limits=TEST_LIMITS)


def recorded_runtime(config: Config) -> Runtime:
    """Relay with the required sinks (recordings + audit) and masking, but a gate that allows
    everything (for data-path tests that must not depend on the shipped policy)."""
    section = config.raw.get("recording", {})
    recordings = RecordingStore.from_config(
        parse_recording_config(section, config.base_dir, config.state_dir)
    )
    masking = load_masking_config(config.raw.get("masking", {}), config.base_dir)

    def output_filter(*, pty: bool) -> OutputFilter:
        return masking.new_masker(pty)

    return Runtime(
        config=config,
        gate=AllowAllGate(),
        recordings=recordings,
        audit_path=config.state_dir / "bastion.db",
        output_filter_factory=output_filter,
        input_masking=masking,
        limits=TEST_LIMITS,
    )


def target_block(
    target: SshdTarget,
    name: str = "web-01",
    *,
    port: int | None = None,
    host_key: str | None = None,
    **extra: str,
) -> str:
    lines = [
        "[[targets]]",
        f'name = "{name}"',
        'host = "127.0.0.1"',
        f"port = {port or target.port}",
        f'login = "{target.login}"',
        f'host_key = "{host_key or target.host_public_key}"',
        f'identity_file = "{target.client_key}"',
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def write_config(
    directory: Path,
    ca: CertificateAuthority,
    targets: str,
    *,
    access: str | None = None,
    extra: str = "",
    max_validity: str = "24h",
    workers: int | None = None,
) -> Path:
    """A bastion config; ``workers`` sets ``[server] workers`` (unset: the shipped default, one
    per core, which is what ``bastion serve`` as a process then runs)."""
    workers_line = "" if workers is None else f"workers = {workers}\n"
    access = access or '[[access]]\nprincipals = ["agents"]\ntargets = ["web-*"]\nlogins = ["*"]\n'
    path = directory / "bastion.toml"
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
host_key = "ssh_host_ed25519_key"
state_dir = "state"
{workers_line}
[auth]
trusted_user_ca_keys = ["{ca.public_key}"]
max_cert_validity = "{max_validity}"

{targets}
{access}
{extra}
"""
    )
    return path


@dataclass
class RunningBastion:
    config: Config
    runtime: Runtime
    port: int
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    stop_event: asyncio.Event
    known_hosts: Path
    errors: list[BaseException] = field(default_factory=list)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the bastion's loop and return its result (await it if a coroutine)."""

        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def ssh_args(self, agent: Agent, user: str, *options: str) -> list[str]:
        args = [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(self.port),
            "-i",
            str(agent.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ]
        if agent.cert is not None:
            args += ["-o", f"CertificateFile={agent.cert}"]
        for opt in options:
            args.append(opt)
        args.append(f"{user}@127.0.0.1")
        return args

    def ssh(
        self,
        agent: Agent,
        user: str,
        command: str | None,
        *options: str,
        input: bytes | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        args = self.ssh_args(agent, user, *options)
        if command is not None:
            args.append(command)
        return subprocess.run(args, input=input, capture_output=True, timeout=timeout)


def start_bastion(config_path: Path, make_runtime: Callable[[Config], Runtime]) -> RunningBastion:
    config = load_config(config_path)
    runtime = make_runtime(config)
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        stop = asyncio.Event()
        holder["stop"] = stop

        def ready(address: tuple[str, int]) -> None:
            holder["port"] = address[1]
            started.set()

        try:
            loop.run_until_complete(serve(runtime, ready=ready, stop=stop))
        except BaseException as exc:  # surfaced to the test through holder
            holder["error"] = exc
            started.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="bastion", daemon=True)
    thread.start()
    if not started.wait(20) or "error" in holder:
        raise RuntimeError(f"bastion did not start: {holder.get('error')!r}")
    port = holder["port"]
    host_pub = config.server.host_key.with_name(config.server.host_key.name + ".pub")
    known_hosts = config_path.parent / "known_hosts_bastion"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub.read_text().strip()}\n")
    return RunningBastion(
        config, runtime, port, thread, holder["loop"], holder["stop"], known_hosts
    )


def lines(data: bytes) -> Sequence[str]:
    return data.decode(errors="replace").splitlines()


SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"


def start_shipped_policy(
    directory: Path, sshd: SshdTarget, ca: CertificateAuthority, extra: str = ""
) -> RunningBastion:
    """The full bastion (``build_runtime``) in front of ``sshd`` with the shipped policy."""
    config = write_config(
        directory, ca, target_block(sshd), extra=f'[policy]\nfile = "{SHIPPED_POLICY}"\n{extra}'
    )
    return start_bastion(config, build_runtime)


@contextmanager
def shared_folder(prefix: str) -> Iterator[Path]:
    """A folder the target's login can write to (pytest's tmp_path is private to root), to
    prove whether a command ran there; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
