"""systemd's notify protocol (``sd_notify(3)``) without libsystemd: one datagram per message.

``Type=notify`` units set ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace).
Outside systemd the variable is unset and every call is a no-op, so the same code runs under a
terminal, a container or the test suite. Sending never raises: a lost notification must not take
the bastion down (systemd's watchdog catches a bastion that really stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("bastion.ops.sdnotify")


class Notifier:
    """Sends state changes to the service manager named by ``NOTIFY_SOCKET`` (if any)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog = _watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True when it was delivered."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self.address)
        except OSError as exc:
            log.warning("sdnotify.failed", extra={"ctx": {"error": exc.strerror or str(exc)}})
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            fields.append(_status(status))
        return self.notify(*fields)

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """``WatchdogSec`` in seconds when systemd expects pings from this process, else None."""
        return self._watchdog


async def watchdog_loop(notifier: Notifier, interval: float | None = None) -> None:
    """Ping at half the watchdog interval until cancelled; returns at once if there is none.

    The ping runs on the event loop, so a loop that stops turning stops pinging and systemd
    restarts the bastion; that is the point of running it here rather than in a thread.
    """
    period = interval if interval is not None else notifier.watchdog_interval()
    if period is None or period <= 0 or not notifier.enabled:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(period / 2)


def _status(text: str) -> str:
    # One line: a newline would start a new (and possibly meaningful) KEY=value field.
    return "STATUS=" + " ".join(text.split())[:200]


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # systemd also knows vsock: addresses; the bastion never runs under one


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    with contextlib.suppress(ValueError):
        if pid and int(pid) != os.getpid():
            return None  # meant for another process (we were forked or exec'd from it)
        value = int(usec)
        if value > 0:
            return value / 1_000_000
    return None
