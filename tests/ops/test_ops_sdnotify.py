"""sd_notify against a real AF_UNIX datagram socket set as NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.ops.sdnotify import Notifier, watchdog_loop


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def _messages(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_stopping_and_watchdog_reach_the_socket(
    listener: tuple[socket.socket, str],
) -> None:
    """Each call arrives as one datagram with systemd's KEY=value fields."""
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("listening on 127.0.0.1:2222")
    assert _messages(sock) == [
        "READY=1",
        f"MAINPID={os.getpid()}",
        "STATUS=listening on 127.0.0.1:2222",
    ]
    assert notifier.status("2 sessions")
    assert _messages(sock) == ["STATUS=2 sessions"]
    assert notifier.watchdog()
    assert _messages(sock) == ["WATCHDOG=1"]
    assert notifier.reloading()
    assert _messages(sock) == ["RELOADING=1"]
    assert notifier.stopping()
    assert _messages(sock) == ["STOPPING=1"]


def test_status_text_cannot_inject_fields(listener: tuple[socket.socket, str]) -> None:
    """A newline in a status text cannot smuggle a second field such as READY=1 or WATCHDOG."""
    sock, path = listener
    Notifier({"NOTIFY_SOCKET": path}).status("reloading\nREADY=1\nWATCHDOG=trigger")
    assert _messages(sock) == ["STATUS=reloading READY=1 WATCHDOG=trigger"]


def test_abstract_namespace_socket() -> None:
    """``@name`` addresses the Linux abstract namespace, as systemd may set it."""
    name = f"bastion-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    """Outside systemd (no NOTIFY_SOCKET) calls do nothing and report False."""
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.watchdog_interval() is None


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    """If the manager's socket is gone, sending reports False instead of crashing the bastion."""
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    """WATCHDOG_USEC is honoured only when WATCHDOG_PID is absent or names this process."""
    assert Notifier(env).watchdog_interval() == expected


async def test_watchdog_loop_pings_at_half_the_interval(
    listener: tuple[socket.socket, str],
) -> None:
    """The watchdog task pings repeatedly (every interval/2) until cancelled."""
    sock, path = listener
    sock.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    task = asyncio.create_task(watchdog_loop(notifier))
    await asyncio.sleep(0.35)  # pings at 0, 0.1, 0.2, 0.3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = []
    while True:
        try:
            pings.append(sock.recv(100))
        except BlockingIOError:
            break
    assert 3 <= len(pings) <= 5
    assert set(pings) == {b"WATCHDOG=1"}


async def test_watchdog_loop_returns_when_no_watchdog_is_wanted(
    listener: tuple[socket.socket, str],
) -> None:
    """Without WATCHDOG_USEC the helper returns at once instead of pinging forever."""
    _, path = listener
    await asyncio.wait_for(watchdog_loop(Notifier({"NOTIFY_SOCKET": path})), 1)
