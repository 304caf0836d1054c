"""The driver: runs ``ShellCore`` on the relay's ``ShellHost`` (timers, gate calls, ends)."""

from __future__ import annotations

import asyncio
import logging

from bastion.hooks import GateVerdict, ShellHost
from bastion.interactive.config import InteractiveConfig
from bastion.interactive.core import ShellCore
from bastion.interactive.integration import new_nonce
from bastion.interactive.programs import SHELL_STATE, ShellState
from bastion.model import ChannelRequest
from bastion.tasks import spawn

log = logging.getLogger("bastion.interactive")


class HostEffects:
    """``Effects`` on a real relay: host calls, loop timers, the gate in a task."""

    def __init__(self, host: ShellHost, shell: ShellState) -> None:
        self.host = host
        self.shell = shell
        self.core: ShellCore | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def to_target(self, data: bytes) -> None:
        self.host.send_to_target(data)

    def to_agent(self, data: bytes) -> None:
        self.host.output_to_agent(data)

    def record_input(self, data: bytes) -> None:
        self.host.record_input(data)

    def marker(self, text: str) -> None:
        self.host.marker(text)

    def end(self, message: str) -> None:
        self.host.end(message)

    def audit(self, kind: str, **fields: object) -> None:
        self.host.audit(kind, **fields)

    def decide(self, unit_id: int, unit: str) -> None:
        task = spawn(self._decide(unit_id, unit), name="shell-decide")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, unit_id: int, unit: str) -> None:
        token = SHELL_STATE.set(self.shell)
        try:
            verdict: GateVerdict = await self.host.decide(unit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the audit log cannot be written: fail closed
            log.error("shell.decide.failed", extra={"ctx": {"error": repr(exc)}})
            if not self.closed:
                self.host.end(f"cannot decide the line ({type(exc).__name__}); session ended")
            return
        finally:
            SHELL_STATE.reset(token)
        if not self.closed and self.core is not None:
            self.core.decided(unit_id, verdict)

    def cancel_decide(self, reason: str) -> None:
        self.host.interrupt_decision(reason)
        for task in list(self._tasks):
            task.cancel()  # reaches broker.wait, which abandons a held request

    def set_timer(self, name: str, delay: float) -> None:
        self.cancel_timer(name)
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self._fire, name)

    def cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        if not self.closed and self.core is not None:
            self.core.timer(name)

    def close(self) -> None:
        self.closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()


class LineGateController:
    """Owns the input line of one PTY shell (``bastion.hooks.ShellController``)."""

    def __init__(self, host: ShellHost, config: InteractiveConfig) -> None:
        self.shell = ShellState(passthrough=config.passthrough,
                                extra_interactive=config.extra_interactive)
        self.effects = HostEffects(host, self.shell)
        self.core = ShellCore(self.effects, config, new_nonce(), self.shell)
        self.effects.core = self.core

    def start(self) -> None:
        self.core.start()

    def agent_input(self, data: bytes) -> None:
        self.core.agent_input(data)

    def target_output(self, data: bytes) -> None:
        self.core.target_output(data)

    def resize(self, width: int, height: int) -> None:
        pass  # the relay already resized the remote PTY; the bastion's line has no layout

    def close(self) -> None:
        self.core.close()
        self.effects.close()


class LineGateFactory:
    """``ShellControllerFactory`` for ``Runtime.shell_controller_factory``."""

    def __init__(self, config: InteractiveConfig) -> None:
        self.config = config

    def __call__(self, host: ShellHost, request: ChannelRequest) -> LineGateController:
        return LineGateController(host, self.config)
