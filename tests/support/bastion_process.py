"""`bastion serve` as a real process (supervisor and workers), with its JSON log parsed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.testing.certs import Agent


@dataclass
class ServeProcess:
    config: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    http_port: int = 0

    @classmethod
    def start(cls, config: Path, timeout: float = 90.0) -> ServeProcess:
        log_path = config.with_name("serve.log")
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        served = cls(config, process, log_path)
        listening = served.wait_event("listening", timeout, worker=None)  # not a worker's line
        served.port = int(listening["address"].rsplit(":", 1)[1])
        if http := served.events("http.listening", worker=None):
            served.http_port = int(http[0]["address"].rsplit(":", 1)[1])
        return served

    # -- the log --------------------------------------------------------------------------------
    def events(self, name: str | None = None, **match: Any) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict) or (name is not None and doc.get("event") != name):
                continue
            if all(doc.get(k) == v for k, v in match.items()):
                out.append(doc)
        return out

    def wait_event(self, name: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.events(name, **match):
                return found[-1]
            if self.process.poll() is not None and not self.events(name, **match):
                raise AssertionError(f"bastion exited ({self.process.returncode}):\n{self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} log line within {timeout}s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def worker_pids(self) -> dict[int, int]:
        """Worker number -> pid of its latest start."""
        return {e["worker"]: e["pid"] for e in self.events("worker.started")}

    # -- clients --------------------------------------------------------------------------------
    def ssh_args(self, agent: Agent, user: str = "web-01", *options: str) -> list[str]:
        known = self.config.with_name("known_hosts")
        if not known.exists():
            host_pub = self.config.with_name("ssh_host_ed25519_key.pub").read_text().strip()
            known.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        args = [
            "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(agent.key),
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "KexAlgorithms=curve25519-sha256",
        ]  # fmt: skip
        if agent.cert is not None:
            args += ["-o", f"CertificateFile={agent.cert}"]
        return [*args, *options, f"{user}@127.0.0.1"]

    def ssh(
        self, agent: Agent, command: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.ssh_args(agent), command], capture_output=True, timeout=timeout
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bastion.cli", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- stopping -------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"bastion did not stop on SIGTERM:\n{self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker it started (their pids are in the log)."""
        pids = [self.process.pid, *self.worker_pids().values()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b") ", 1)[1][:1] != b"Z"
    except OSError:
        return False
