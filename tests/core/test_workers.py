"""`[server] workers = N`: a supervisor and N worker processes on one port, as an operator runs it.

What must hold for the whole bastion holds across workers: the per-identity session cap, the
failed-login lockout, approvals decided in another process, revocation, reload, /metrics; a
worker that dies is restarted while the others serve, and the requests its agents waited on are
abandoned; workers never outlive their supervisor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pyotp
import pytest
from support.bastion import target_block, write_config
from support.bastion_process import ServeProcess, alive

from bastion.testing.certs import Agent, CertificateAuthority
from bastion.testing.sshd import SshdTarget

POLICY = Path(__file__).resolve().parents[2] / "config" / "policy.toml"
CONNECTIONS = 16  # sequential logins: all on one of two workers has probability 2**-15


TEST_POLICY = """
[policy]
version = 1
default = "review"

[[rules]]
id = "everyday"
action = "{everyday}"
reason = "harmless"
program = ["echo", "true", "sleep"]

[[rules]]
id = "az-group-delete"
action = "review"
reason = "deletes an Azure resource group"
program = ["az"]
subcommand = ["group delete"]
approvers = ["sre"]
timeout = "120s"
"""


def start(
    directory: Path, ca: CertificateAuthority, sshd: SshdTarget, **limits: object
) -> ServeProcess:
    (directory / "policy.toml").write_text(TEST_POLICY.format(everyday="allow"))
    limits = {"auth_failures_per_minute": 1000, **limits}
    extra = '[policy]\nfile = "policy.toml"\n[http]\nlisten = "127.0.0.1:0"\n[limits]\n'
    extra += "".join(f"{k} = {json.dumps(v)}\n" for k, v in limits.items())
    return ServeProcess.start(
        write_config(directory, ca, target_block(sshd), extra=extra, workers=2)
    )


@pytest.fixture
def serve(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget
) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def run(**limits: object) -> ServeProcess:
        started.append(start(tmp_path, ca, sshd, **limits))
        return started[-1]

    yield run
    for served in started:
        if served.process.poll() is None:
            served.kill()


def metric(served: ServeProcess, name: str) -> float:
    url = f"http://127.0.0.1:{served.http_port}/metrics"
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name))


def test_workers_share_the_port_and_the_session_cap(
    serve: Callable[..., ServeProcess], make_agent: Callable[..., Agent]
) -> None:
    """Both workers take connections; the per-identity cap counts sessions on every worker;
    /metrics on the supervisor adds up what the workers did; SIGTERM stops them all."""
    served = serve(max_sessions_per_identity=3)
    pids = served.worker_pids()
    assert set(pids) == {1, 2}
    assert served.events("listening", worker=None)[-1]["workers"] == 2
    agent = make_agent(key_id="capped-agent")
    for i in range(CONNECTIONS):
        done = served.ssh(agent, f"echo run-{i}")
        assert (done.returncode, done.stdout) == (0, f"run-{i}\n".encode()), done.stderr
    assert {e.get("worker") for e in served.events("connection.open")} == {1, 2}, served.tail()
    assert metric(served, 'bastion_sessions_total{target="web-01"}') == CONNECTIONS

    held = [
        subprocess.Popen([*served.ssh_args(agent), "echo up; sleep 60"], stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    try:
        for proc in held:
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        for _ in range(6):  # whichever worker a login reaches, the count is the bastion's
            done = served.ssh(agent, "echo over")
            assert done.returncode == 255, done.stdout
            assert b"too many concurrent sessions for this identity" in done.stderr
        assert metric(served, 'bastion_sessions_active{target="web-01"}') == 3
    finally:
        for proc in held:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the slots come back when the sessions end
        done = served.ssh(agent, "echo again")
        if done.returncode == 0:
            break
        time.sleep(0.2)
    assert done.stdout == b"again\n", done.stderr
    assert served.stop() == 0
    assert not any(alive(pid) for pid in pids.values())
    assert served.events("shutdown.done")


def test_failed_logins_lock_out_the_address_on_every_worker(
    serve: Callable[..., ServeProcess], make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """Four plain-key logins use up the address's budget wherever they landed; then a valid
    certificate is refused on both workers (with per-worker counts one would still admit it)."""
    served = serve(  # plain keys name no identity: they count toward the address's own bar
        auth_failures_per_minute=4, auth_failures_per_address_per_minute=4, auth_lockout="5m"
    )
    plain = Agent.create(tmp_path / "plain", None, name="plain")
    for _ in range(4):
        done = served.ssh(plain, "echo no")
        assert done.returncode == 255 and b"plain public keys are not accepted" in done.stderr
    time.sleep(0.3)  # the last failure is counted when its connection closes
    agent = make_agent()
    for _ in range(CONNECTIONS):
        done = served.ssh(agent, "echo hi")
        assert done.returncode == 255, (done.stdout, served.tail())
        assert b"too many failed logins from this address" in done.stderr
    refusing = {
        e.get("worker") for e in served.events("auth.refused") if "too many failed" in e["reason"]
    }
    assert refusing == {1, 2}, served.tail()


def test_approval_from_another_process_and_a_dead_worker_is_replaced(
    serve: Callable[..., ServeProcess], make_agent: Callable[..., Agent]
) -> None:
    """A command held in a worker runs once an operator approves on the CLI; when the worker
    holding the next one is killed, its agent is cut off, the request is abandoned, the worker
    is restarted, the other keeps serving, and the audit chain still verifies."""
    served = serve()
    enrolled = served.cli("operators", "add", "alice", "--group", "sre")
    assert enrolled.returncode == 0, enrolled.stderr
    totp = pyotp.parse_uri(enrolled.stdout.splitlines()[0])
    agent = make_agent()

    def hold(command: str) -> tuple[subprocess.Popen[bytes], str]:
        proc = subprocess.Popen(
            [*served.ssh_args(agent), command], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert line.startswith("bastion: held for review as "), (line, served.tail())
        return proc, line.split(" as ", 1)[1].split()[0]

    proc, request_id = hold("az group delete -n rg --yes; echo after")
    decided = served.cli(
        "approvals", "approve", request_id, "--operator", "alice", "--totp", totp.now()
    )
    assert decided.returncode == 0, decided.stderr
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, b"after\n")

    proc, request_id = hold("az group delete -n rg2 --yes")
    holder = served.events("command.decided", decision="review")[-1]["worker"]
    victim = served.worker_pids()[holder]
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == 255
    served.wait_event("worker.exited", worker=holder)
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline and state != "abandoned":
        shown = served.cli("approvals", "show", request_id, "--json")
        state = json.loads(shown.stdout)["state"] if shown.returncode == 0 else shown.stderr
        time.sleep(0.2)
    assert state == "abandoned", state
    deadline = time.monotonic() + 60
    while served.worker_pids()[holder] == victim and time.monotonic() < deadline:
        time.sleep(0.1)
    restarted = served.worker_pids()[holder]
    assert restarted != victim and alive(restarted)
    served.wait_event("listening", worker=holder, timeout=60)
    for i in range(CONNECTIONS // 2):
        done = served.ssh(agent, f"echo still-{i}")
        assert done.stdout == f"still-{i}\n".encode(), done.stderr
    assert served.stop() == 0
    verified = served.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_reload_and_revocation_reach_every_worker(
    serve: Callable[..., ServeProcess], make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """SIGHUP to the supervisor reloads every worker; a revocation made on the CLI is refused
    at the next login on every worker."""
    served = serve()
    agent = make_agent(serial=424242)
    assert served.ssh(agent, "echo ok").stdout == b"ok\n"
    (tmp_path / "policy.toml").write_text(TEST_POLICY.format(everyday="deny"))
    served.process.send_signal(signal.SIGHUP)
    for worker in (1, 2):
        served.wait_event("config.reloaded", worker=worker)
    for _ in range(CONNECTIONS):
        done = served.ssh(agent, "echo denied")
        assert (done.returncode, done.stdout) == (126, b""), done.stderr
    denying = {e.get("worker") for e in served.events("command.decided", decision="deny")}
    assert denying == {1, 2}, served.tail()

    revoked = served.cli("cert", "revoke", "--serial", "424242")
    assert revoked.returncode == 0, revoked.stderr
    for _ in range(CONNECTIONS):
        done = served.ssh(agent, "echo gone")
        assert done.returncode == 255 and b"revoked" in done.stderr, done.stderr
    refusing = {e.get("worker") for e in served.events("auth.refused") if "revoked" in e["reason"]}
    assert refusing == {1, 2}, served.tail()


def test_workers_stop_with_their_supervisor(serve: Callable[..., ServeProcess]) -> None:
    """SIGKILL of the supervisor leaves no worker behind (parent-death signal and link EOF)."""
    served = serve()
    pids = list(served.worker_pids().values())
    assert len(pids) == 2 and all(alive(p) for p in pids)
    served.process.kill()
    served.process.wait(10)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids), served.tail()


def test_sigterm_while_workers_start_stops_everything(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget
) -> None:
    """A stop during start-up is not held up by workers still loading (nor leaves them behind)."""
    (tmp_path / "policy.toml").write_text(TEST_POLICY.format(everyday="allow"))
    config = write_config(
        tmp_path, ca, target_block(sshd), extra='[policy]\nfile = "policy.toml"\n', workers=2
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config)], stderr=err
        )
    served = ServeProcess(config, proc, log)
    try:
        served.wait_event("worker.started", worker=2)  # workers are loading, none listens yet
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        pids = list(served.worker_pids().values())
        deadline = time.monotonic() + 30
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids and not any(alive(p) for p in pids), served.tail()
        assert not served.events("listening", worker=None)  # it never waited for them to listen
    finally:
        if proc.poll() is None:
            served.kill()
