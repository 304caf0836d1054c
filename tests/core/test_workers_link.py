"""The supervisor <-> worker link over a real socketpair, and the supervisor's shared counts."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from support.bastion import bare_runtime, target_block, write_config

from bastion.config import load_config
from bastion.ops.limits import Limits
from bastion.ops.metrics import Metrics
from bastion.ssh.server import AgentServer
from bastion.testing.certs import CertificateAuthority
from bastion.testing.sshd import SshdTarget
from bastion.workers import coordinator as coordinator_module
from bastion.workers.coordinator import Coordinator, RemoteMetrics
from bastion.workers.ipc import MAX_LINE, Link, LinkClosed


async def pair() -> tuple[Link, Link]:
    a, b = socket.socketpair()
    return await Link.from_socket(a), await Link.from_socket(b)


async def test_calls_are_answered_and_events_arrive() -> None:
    worker, supervisor = await pair()
    seen: list[tuple[str, list[Any]]] = []

    async def handle(op: str, args: list[Any]) -> Any:
        seen.append((op, args))
        if op == "add":
            return args[0] + args[1]
        if op == "boom":
            raise RuntimeError("no")
        return None

    serving = asyncio.create_task(supervisor.serve(handle))
    reading = asyncio.create_task(worker.serve())
    assert await worker.call("add", 2, 3) == 5
    worker.event("note", "x")
    with pytest.raises(LinkClosed, match="boom failed"):  # a failing call answers an error
        await worker.call("boom")
    assert await worker.call("add", 1, 1) == 2  # and the link stays up
    assert ("note", ["x"]) in seen
    worker.close()
    await asyncio.wait_for(serving, 5)
    reading.cancel()


async def test_calls_fail_closed_when_the_other_side_goes_away() -> None:
    worker, supervisor = await pair()
    never = asyncio.Event()

    async def stall(op: str, args: list[Any]) -> Any:
        await never.wait()

    serving = asyncio.create_task(supervisor.serve(stall))
    reading = asyncio.create_task(worker.serve())
    pending = asyncio.create_task(worker.call("admit_session", "k"))
    await asyncio.sleep(0.05)
    supervisor.close()  # e.g. the supervisor died
    with pytest.raises(LinkClosed):
        await asyncio.wait_for(pending, 5)
    await asyncio.wait_for(reading, 5)
    assert worker.closed
    with pytest.raises(LinkClosed):
        await worker.call("admit_session", "k")
    worker.event("dropped")  # no error once closed
    serving.cancel()


@pytest.mark.parametrize("garbage", [b"not json\n", b"[1, 2]\n", b"x" * (MAX_LINE + 10) + b"\n"])
async def test_a_malformed_or_oversized_line_closes_the_link(garbage: bytes) -> None:
    raw, theirs = socket.socketpair()  # raw: a worker that writes bytes, not messages
    supervisor = await Link.from_socket(theirs)
    handled: list[str] = []

    async def handle(op: str, args: list[Any]) -> Any:
        handled.append(op)

    serving = asyncio.create_task(supervisor.serve(handle))
    await asyncio.to_thread(raw.sendall, garbage + b'{"op": "after", "args": []}\n')
    await asyncio.wait_for(serving, 5)
    assert supervisor.closed and handled == []
    raw.close()


async def test_coordinator_counts_sessions_for_every_worker() -> None:
    coord = Coordinator(Limits(max_sessions_per_identity=2), Metrics(["web-01"]))
    assert await coord.handle(1, "admit_session", ["agent-a"]) is True
    assert await coord.handle(2, "admit_session", ["agent-a"]) is True
    assert await coord.handle(1, "admit_session", ["agent-a"]) is False  # cap for the bastion
    assert await coord.handle(2, "admit_session", ["agent-b"]) is True
    await coord.handle(1, "release_session", ["agent-b"])  # not worker 1's: ignored
    assert await coord.handle(1, "admit_session", ["agent-a"]) is False
    await coord.handle(2, "release_session", ["agent-a"])
    assert await coord.handle(1, "admit_session", ["agent-a"]) is True
    coord.worker_gone(1)  # both of worker 1's agent-a sessions come back
    assert coord.sessions.sessions("agent-a") == 0
    assert coord.sessions.sessions("agent-b") == 1


async def test_coordinator_locks_out_an_address_across_workers() -> None:
    now = [1000.0]
    coord = Coordinator(
        Limits(auth_failures_per_minute=3, auth_failures_per_address_per_minute=3, auth_lockout=60),
        Metrics(),
        clock=lambda: now[0],
    )
    for worker in (1, 2, 1):
        assert await coord.handle(worker, "auth_allowed", ["10.0.0.9"]) is True
        await coord.handle(worker, "auth_failed", ["10.0.0.9"])
    assert await coord.handle(2, "auth_allowed", ["10.0.0.9"]) is False
    assert await coord.handle(2, "auth_allowed", ["10.0.0.8"]) is True
    now[0] += 61
    assert await coord.handle(1, "auth_allowed", ["10.0.0.9"]) is True


async def test_coordinator_locks_one_identity_not_its_neighbours() -> None:
    """Issue 20 finding 7: failures of one identity, spread over workers, lock that identity at
    the address; another identity from the same address is still allowed."""
    coord = Coordinator(
        Limits(auth_failures_per_minute=3, auth_lockout=60), Metrics(), clock=lambda: 1000.0
    )
    for worker in (1, 2, 1):
        await coord.handle(worker, "auth_failed", ["10.0.0.9", "noisy"])
    assert await coord.handle(2, "auth_allowed", ["10.0.0.9", "noisy"]) is False
    assert await coord.handle(2, "auth_allowed", ["10.0.0.9", "quiet"]) is True
    assert await coord.handle(2, "auth_allowed", ["10.0.0.9"]) is True  # the address is open
    assert await coord.handle(1, "auth_allowed", ["10.0.0.7", "noisy"]) is True


async def test_coordinator_refuses_unknown_operations_and_metrics() -> None:
    metrics = Metrics(["web-01"])
    coord = Coordinator(Limits(), metrics)
    await coord.handle(1, "metric", ["session_opened", "web-01"])
    await coord.handle(2, "metric", ["bytes_relayed", "out", 4096])
    text = metrics.render().decode()
    assert 'bastion_sessions_total{target="web-01"} 1.0' in text
    assert 'bastion_relayed_bytes_total{direction="out"} 4096.0' in text
    for op, args in (
        ("metric", ["render"]),  # not a recording call
        ("metric", ["masked", "rule", [1]]),  # not a plain value
        ("shutdown", []),
        ("admit_session", [7]),
        ("admit_session", ["k" * 5000]),
    ):
        with pytest.raises(ValueError):
            await coord.handle(1, op, args)


async def test_coordinator_remembers_waiting_requests_boundedly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coordinator_module, "MAX_WAITING", 3)
    coord = Coordinator(Limits(), Metrics())
    announced: list[tuple[str, str]] = []

    async def announce(event: str, request_id: str) -> None:
        announced.append((event, request_id))

    coord.on_approval = announce
    for i in range(5):
        await coord.handle(1, "approval", ["submitted", f"r{i}"])
    await coord.handle(1, "approval", ["approved", "r4"])
    await coord.handle(2, "approval", ["submitted", "s1"])
    assert coord.worker_gone(1) == {"r2", "r3"}  # r0, r1 forgotten (oldest); r4 resolved
    assert coord.worker_gone(1) == set()
    assert announced[-1] == ("submitted", "s1")


async def test_remote_metrics_send_events() -> None:
    worker, supervisor = await pair()
    metrics = Metrics(["web-01"])
    coord = Coordinator(Limits(), metrics)
    serving = asyncio.create_task(supervisor.serve(coord.handler(1)))
    reading = asyncio.create_task(worker.serve())
    remote = RemoteMetrics(worker)
    remote.session_opened("web-01")
    remote.decision("deny", None)
    remote.masked("aws-key", 2)
    await worker.call("auth_allowed", "127.0.0.1")  # a round trip: the events before it landed
    text = metrics.render().decode()
    assert 'bastion_sessions_total{target="web-01"} 1.0' in text
    assert 'bastion_decisions_total{action="deny",rule="none"} 1.0' in text
    assert 'bastion_masked_secrets_total{rule="aws-key"} 2.0' in text
    worker.close()
    await asyncio.wait_for(serving, 5)
    reading.cancel()


async def test_a_worker_refuses_logins_when_its_supervisor_is_gone(
    tmp_path: Path, ca: CertificateAuthority, sshd: SshdTarget
) -> None:
    """No session or login is admitted that the supervisor did not count (fail closed)."""
    runtime = bare_runtime(load_config(write_config(tmp_path, ca, target_block(sshd))))
    ours, theirs = socket.socketpair()
    runtime.link = await Link.from_socket(ours)
    reading = asyncio.create_task(runtime.link.serve())
    theirs.close()  # the supervisor died
    await asyncio.wait_for(reading, 5)
    server = AgentServer(runtime)
    server.peer_ip = "127.0.0.1"
    assert await runtime.admit_session(server, "agent@test") is False
    assert await runtime.auth_allowed(server) is False
    assert runtime.connections.sessions("agent@test") == 0  # nothing counted locally either
