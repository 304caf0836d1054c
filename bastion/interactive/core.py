"""The line-owning shell controller as a sans-IO state machine.

The core never awaits and does no I/O: everything it does goes through ``Effects`` (the driver
in controller.py maps it to the relay's ``ShellHost``; tests record it). States:

STARTING    the integration snippet was sent; output is hidden until the first valid prompt
PROMPTING   a valid A marker arrived; the prompt is shown; waiting for B (readline reading)
AT_PROMPT   the bastion owns the line: keys edit its buffer, Enter ends a unit
DECIDING    a unit is with the gate; input is queued (type-ahead), Ctrl-C cancels
DELIVERED   the approved unit was sent; waiting for the shell's C marker reporting it
RUNNING     the command runs; input is frozen (only Ctrl-C/Ctrl-D/Ctrl-Z pass) unless the
            program was allowed to be interactive (then input passes through, recorded)
FALLBACK    no integration: every line is held for review (``fallback = "review"``)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from enum import Enum
from typing import Protocol

from bastion.interactive.config import InteractiveConfig
from bastion.interactive.editor import LineBuffer
from bastion.interactive.integration import snippet
from bastion.interactive.keys import (
    PASTE_END,
    PASTE_START,
    Control,
    Dropped,
    Escape,
    Key,
    KeyTokenizer,
    Paste,
    Text,
)
from bastion.interactive.markers import Marker, MarkerParser
from bastion.interactive.programs import ShellState

CTRL_C, CTRL_D, CTRL_Z = 0x03, 0x04, 0x1A
ENTER = (0x0D, 0x0A)
RUNNING_KEYS = (CTRL_C, CTRL_D, CTRL_Z)
MAX_QUEUED = 256 * 1024  # bytes of type-ahead kept while a unit is decided or delivered
MAX_HIDDEN = 4 * 1024 * 1024  # output hidden between delivery and the C marker
MAX_PROMPT = 4096
CONTINUATION = b"> "
ALT_SCREEN_ON = (b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h")
ALT_SCREEN_OFF = (b"\x1b[?1049l", b"\x1b[?1047l", b"\x1b[?47l")

_CONTROL_NAMES = {
    0x09: "Tab (completion)", 0x12: "Ctrl-R (history search)", 0x10: "Ctrl-P (history)",
    0x0E: "Ctrl-N (history)", 0x16: "Ctrl-V (quoted insert)", 0x18: "Ctrl-X (command prefix)",
    0x19: "Ctrl-Y (yank)", 0x01: "Ctrl-A (cursor movement)", 0x05: "Ctrl-E (cursor movement)",
    0x02: "Ctrl-B (cursor movement)", 0x06: "Ctrl-F (cursor movement)", 0x0B: "Ctrl-K (kill)",
    0x0F: "Ctrl-O (operate-and-get-next)", 0x14: "Ctrl-T (transpose)",
    0x1F: "Ctrl-_ (undo)", 0x1D: "Ctrl-] (character search)",
}


class State(Enum):
    STARTING = "starting"
    PROMPTING = "prompting"
    AT_PROMPT = "at-prompt"
    DECIDING = "deciding"
    DELIVERED = "delivered"
    RUNNING = "running"
    FALLBACK = "fallback"
    ENDED = "ended"


class Verdict(Protocol):
    """What the core needs of a gate verdict (``bastion.hooks.GateVerdict`` fits)."""

    @property
    def action(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def details(self) -> Mapping[str, object]: ...


class Effects(Protocol):
    """Everything the core may do; the driver performs it."""

    def to_target(self, data: bytes) -> None: ...

    def to_agent(self, data: bytes) -> None: ...

    def record_input(self, data: bytes) -> None: ...

    def marker(self, text: str) -> None: ...

    def decide(self, unit_id: int, unit: str) -> None:
        """Ask the gate; the answer comes back as ``ShellCore.decided(unit_id, verdict)``."""

    def cancel_decide(self, reason: str) -> None:
        """Stop deciding the current unit; a hold it waits on is abandoned with ``reason``."""

    def end(self, message: str) -> None: ...

    def audit(self, kind: str, **fields: object) -> None: ...

    def set_timer(self, name: str, delay: float) -> None: ...

    def cancel_timer(self, name: str) -> None: ...


def is_incomplete(text: str) -> bool:
    from bastion.policy import is_incomplete as policy_incomplete

    return policy_incomplete(text)


def comment_only(unit: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in unit.split("\n"))


def same_command(reported: str, unit: str) -> bool:
    """The shell's report matches the approved unit (bash drops backslash-newlines)."""
    return reported in (unit, unit.replace("\\\n", ""))


class ShellCore:
    def __init__(
        self, effects: Effects, config: InteractiveConfig, nonce: str, shell: ShellState
    ) -> None:
        self.fx = effects
        self.config = config
        self.nonce = nonce
        self.shell = shell
        self.state = State.STARTING
        self.keys = KeyTokenizer()
        self.parser = MarkerParser(nonce)
        self.buffer = LineBuffer()
        self.queue: deque[Key] = deque()
        self.queued = 0
        self.prompt = b"$ "
        self._capturing = False
        self._unit_id = 0
        self._unit = ""
        self._interactive: str | None = None
        self.passthrough = False
        self.alt_screen = False
        self._hidden = 0
        self._tail = b""
        self._noticed: set[str] = set()
        self._frozen_notice = False
        self._interrupted = False
        self._foreign = 0
        self.exit_status: int | None = None

    @property
    def ended(self) -> bool:
        return self.state is State.ENDED

    # -- events ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.fx.to_target(snippet(self.nonce))
        self.fx.set_timer("integration", self.config.integration_timeout)

    def agent_input(self, data: bytes) -> None:
        if self.state is State.ENDED:
            return
        self.fx.record_input(data)
        if self.state is State.RUNNING and self.passthrough:
            self.fx.to_target(data)
            return
        self._keys_in(self.keys.feed(data))
        if self.keys.pending:
            self.fx.set_timer("keys", 0.1)

    def target_output(self, data: bytes) -> None:
        if self.state is State.ENDED:
            return
        for seg in self.parser.feed(data):
            if isinstance(seg, Marker):
                self._marker(seg)
            else:
                self._output(seg)
            if self.ended:
                return
        # A partial marker stays held until its end arrives (never flushed by time: a marker
        # split across packets under load must not leak out as output).

    def timer(self, name: str) -> None:
        if self.state is State.ENDED:
            return
        if name == "keys":
            self._keys_in(self.keys.flush())
        elif name == "integration" and self.state is State.STARTING:
            self._integration_failed("no shell-integration marker appeared (is the login shell"
                                     " bash 4.4 or later?)")
        elif name == "confirm" and self.state is State.DELIVERED:
            self._end("the shell did not confirm the approved command in time")

    def decided(self, unit_id: int, verdict: Verdict) -> None:
        if unit_id != self._unit_id or self.state is not State.DECIDING:
            return  # cancelled by Ctrl-C, or the session ended
        if verdict.action == "allow":
            program = verdict.details.get("interactive")
            self._interactive = program if isinstance(program, str) else None
            self._deliver(self._unit)
            return
        message = verdict.message or f"{verdict.action}: the line was not run"
        if verdict.action == "review" and not message.startswith("held for review"):
            # A review verdict reaches the core only when holds are refused (shell_reviews).
            message = f"held for review: {message}; the line was not run"
        self.fx.marker(f"shell line refused ({verdict.action})")
        self._refused(message)

    def close(self) -> None:
        self.state = State.ENDED
        for name in ("integration", "confirm", "keys", "output"):
            self.fx.cancel_timer(name)

    # -- agent keys -----------------------------------------------------------------------------
    def _keys_in(self, keys: list[Key]) -> None:
        for key in keys:
            if isinstance(key, Paste):
                self._enqueue_many(_paste_keys(key.data))
            else:
                self._key_arrived(key)
        self._pump()

    def _enqueue_many(self, keys: list[Key]) -> None:
        for key in keys:
            self._key_arrived(key)

    def _key_arrived(self, key: Key) -> None:
        state = self.state
        if isinstance(key, Control) and key.code == CTRL_C:
            self._ctrl_c()
            return
        if state is State.RUNNING:
            if isinstance(key, Control) and key.code in RUNNING_KEYS:
                self.fx.to_target(bytes([key.code]))
            elif not self._frozen_notice:
                self._frozen_notice = True
                why = "a full-screen program is open" if self.alt_screen else "a command runs"
                self.fx.to_agent(f"\a\r\nbastion: input ignored while {why} (only Ctrl-C,"
                                 " Ctrl-D and Ctrl-Z reach it)\r\n".encode())
            return
        size = _key_size(key)
        if self.queued + size > MAX_QUEUED:
            self._notice("overflow", "too much type-ahead; input dropped")
            return
        self.queue.append(key)
        self.queued += size

    def _pump(self) -> None:
        while self.queue and self.state in (State.AT_PROMPT, State.FALLBACK):
            key = self.queue.popleft()
            self.queued -= _key_size(key)
            self._edit(key)

    def _edit(self, key: Key) -> None:
        buf = self.buffer
        if isinstance(key, Text):
            if buf.size + len(key.text) > self.config.max_unit:
                self._notice("long", f"a line is limited to {self.config.max_unit} bytes")
                return
            self.fx.to_agent(buf.insert(key.text))
            return
        if isinstance(key, Escape):
            self._notice(key.name, f"{key.name} is not forwarded")
            return
        if isinstance(key, Dropped):
            self._notice(key.why, f"{key.why}: dropped")
            return
        assert isinstance(key, Control)
        code = key.code
        echo: bytes | None
        if code in ENTER:
            self._enter()
            return
        if code in (0x7F, 0x08):
            echo = buf.backspace()
        elif code == 0x15:
            echo = buf.kill_line()
        elif code == 0x17:
            echo = buf.kill_word()
        elif code == 0x0C:
            echo = b"\x1b[H\x1b[2J" + self.prompt + buf.render(CONTINUATION)
        elif code == CTRL_D and buf.empty:
            self.fx.to_target(b"\x04")  # end of input: the shell exits
            if self.state is State.AT_PROMPT:
                self.state = State.PROMPTING
            return
        else:
            name = _CONTROL_NAMES.get(code, f"Ctrl-{chr(code + 64)}" if code < 32 else "DEL")
            self._notice(name, f"{name} is not forwarded")
            return
        self.fx.to_agent(echo if echo is not None else b"\a")

    def _enter(self) -> None:
        buf = self.buffer
        text = buf.text()
        if text.strip() and is_incomplete(text):
            buf.newline()
            self.fx.to_agent(b"\r\n" + CONTINUATION)
            return
        buf.clear()
        self.fx.to_agent(b"\r\n")
        if not text.strip():
            self.fx.to_agent(self.prompt)
            return
        if self.state is State.FALLBACK:
            self.fx.audit("shell_line_held", command=text, reason="no shell integration")
            self._refused("held for review: commands in this shell cannot be verified (no shell"
                          " integration), and approvals are not enabled on this bastion, so the"
                          " line was not run")
            return
        self._unit_id += 1
        self._unit = text
        self.state = State.DECIDING
        self.fx.decide(self._unit_id, text)

    def _ctrl_c(self) -> None:
        """Ctrl-C clears the bastion's line; it reaches the target only when something runs
        there (at an idle prompt the remote line is empty, and readline's answer to a SIGINT
        is not a reliable new prompt, so the bastion redraws its own)."""
        self.queue.clear()
        self.queued = 0
        state = self.state
        if state in (State.DELIVERED, State.RUNNING):
            self.fx.to_target(b"\x03")
            if state is State.DELIVERED:
                self._interrupted = True  # readline may drop the line: no C marker is fine
            return
        if state in (State.AT_PROMPT, State.DECIDING, State.FALLBACK):
            self.buffer.clear()
            self._unit_id += 1  # a verdict still on its way is now stale
            if state is State.DECIDING:
                # Nobody waits for the line any more: its approval request (if it is held) is
                # abandoned, so no operator can approve a command that would never run.
                self.fx.cancel_decide("the agent interrupted the held line (Ctrl-C)")
            self.fx.to_agent(b"^C\r\n" + self.prompt)
            if state is State.DECIDING:
                self.state = State.AT_PROMPT
        # STARTING/PROMPTING: the queue is cleared; the prompt being drawn is the fresh one.

    def _notice(self, key: str, text: str) -> None:
        if key in self._noticed:
            self.fx.to_agent(b"\a")
            return
        self._noticed.add(key)
        line = f"\a\r\nbastion: {text} (the bastion owns the input line)\r\n".encode()
        self.fx.to_agent(line + self.prompt + self.buffer.render(CONTINUATION))

    def _refused(self, message: str) -> None:
        self.fx.to_agent(f"bastion: {message}\r\n".encode() + self.prompt)
        self.state = State.FALLBACK if self.state is State.FALLBACK else State.AT_PROMPT
        self._pump()

    # -- delivery and verification ----------------------------------------------------------------
    def _deliver(self, unit: str) -> None:
        # Clear the remote line, paste the unit so readline inserts it literally, then Enter.
        data = unit.encode("utf-8", "surrogateescape")
        self.state = State.DELIVERED
        self._hidden = 0
        self._interrupted = False
        self.fx.marker("shell line delivered")
        self.fx.to_target(b"\x15" + PASTE_START + data + PASTE_END + b"\r")
        self.fx.set_timer("confirm", self.config.confirm_timeout)

    def _marker(self, m: Marker) -> None:
        if not m.valid:
            self._foreign += 1
            if self._foreign == 1:
                self.fx.audit("shell_marker_foreign", marker=m.kind[:8])
                self.fx.marker("foreign shell-integration marker removed from output")
            return
        state = self.state
        if m.kind == "C":
            if state is not State.DELIVERED:
                self._end("a command started that the bastion did not deliver")
                return
            if not same_command(m.payload, self._unit):
                self._end("the shell reported a different command than the one approved")
                return
            self.fx.cancel_timer("confirm")
            self.state = State.RUNNING
            self._frozen_notice = False
            self.shell.learn(self._unit)
            if self._interactive is not None:
                self.passthrough = True
                self.fx.audit("shell_interactive", program=self._interactive, command=self._unit)
                self.fx.marker(f"interactive program {self._interactive}: input passed through")
            return
        if state is State.DELIVERED and m.kind in ("D", "A"):
            if not (comment_only(self._unit) or self._interrupted):
                self._end("the shell did not report running the approved command")
                return
            self.fx.cancel_timer("confirm")
        if m.kind == "D":
            if state is State.RUNNING:
                self.exit_status = int(m.payload) if m.payload.isdigit() else None
                self.shell.finished(self.exit_status)
                self.fx.audit("shell_command_finished", exit_status=self.exit_status)
                self.fx.marker(f"shell command finished: exit {m.payload[:8]}")
            self.passthrough = False
            self.alt_screen = False
            if state is not State.DECIDING:
                self.state = State.PROMPTING
                self._capturing = False
        elif m.kind == "A":
            if state is State.DECIDING:
                return
            if state is State.STARTING:
                self.fx.cancel_timer("integration")
                self.fx.audit("shell_integration", status="ready")
                self.fx.marker("shell integration ready")
            self.shell.moved_to(m.payload or None)
            self.state = State.PROMPTING
            self.passthrough = False
            self._capturing = True
            self.prompt = b""
        elif m.kind == "B" and state is State.AT_PROMPT:
            # readline redrew its prompt (window change): show the bastion's line again.
            if not self.buffer.empty:
                self.fx.to_agent(self.buffer.render(CONTINUATION))
        elif m.kind == "B" and state is State.PROMPTING and self._capturing:
            self._capturing = False
            self.state = State.AT_PROMPT
            if not self.buffer.empty:
                self.fx.to_agent(self.buffer.render(CONTINUATION))
            self._pump()

    def _output(self, data: bytes) -> None:
        if not data:
            return
        state = self.state
        if state is State.STARTING:
            return  # the snippet's echo and the login banner: never shown (they hold the nonce)
        if state is State.DELIVERED:
            self._hidden += len(data)  # readline redrawing the pasted line: the echo was ours
            if self._hidden > MAX_HIDDEN:
                self._end("the shell did not confirm the approved command")
            return
        window = self._tail + data
        if self.nonce.encode() in window:
            self._end("the shell-integration secret appeared in the output")
            return
        self._tail = window[-(len(self.nonce) - 1):]
        if state is State.RUNNING:
            if any(s in data for s in ALT_SCREEN_ON):
                self.alt_screen = True
            if any(s in data for s in ALT_SCREEN_OFF):
                self.alt_screen = False
        if self._capturing and len(self.prompt) + len(data) <= MAX_PROMPT:
            self.prompt += data
        self.fx.to_agent(data)

    def _integration_failed(self, why: str) -> None:
        self.fx.audit("shell_integration", status="failed", reason=why,
                      fallback=self.config.fallback)
        if self.config.fallback == "refuse":
            self._end(f"cannot verify commands in this shell: {why}; run commands with"
                      " ssh TARGET 'COMMAND'")
            return
        self.state = State.FALLBACK
        self.prompt = b"(held) $ "
        self.fx.to_agent(f"bastion: cannot verify commands in this shell: {why}; every line"
                         " will be held for review\r\n".encode() + self.prompt)
        self._pump()

    def _end(self, message: str) -> None:
        if self.state is State.ENDED:
            return
        self.fx.audit("shell_verification_failed", reason=message, state=self.state.value)
        self.state = State.ENDED
        self.fx.end(f"{message}; session ended")


def _key_size(key: Key) -> int:
    if isinstance(key, Text):
        return len(key.text)
    if isinstance(key, Paste | Escape | Dropped):
        return len(key.data)
    return 1


def _paste_keys(data: bytes) -> list[Key]:
    """A paste is typed text: newlines end lines (each unit is gated); tabs are literal;
    other control bytes are dropped."""
    keys: list[Key] = []
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    run: list[str] = []
    for ch in text:
        if ch in "\r\n":
            if run:
                keys.append(Text("".join(run)))
                run = []
            keys.append(Control(0x0D))
        elif ch == "\t" or (ch >= " " and ch != "\x7f"):
            run.append(ch)
        else:
            if run:
                keys.append(Text("".join(run)))
                run = []
            keys.append(Dropped(ch.encode(), "control character in a paste"))
    if run:
        keys.append(Text("".join(run)))
    return keys
