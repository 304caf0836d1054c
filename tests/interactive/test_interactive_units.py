"""Sans-IO pieces of the line-owning controller: keys, line buffer, markers, state machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from bastion.errors import ConfigError
from bastion.interactive.config import InteractiveConfig, parse_interactive_config
from bastion.interactive.core import ShellCore, State
from bastion.interactive.editor import LineBuffer
from bastion.interactive.keys import Control, Escape, Key, KeyTokenizer, Paste, Text
from bastion.interactive.markers import Marker, MarkerParser, escape, unescape
from bastion.interactive.programs import ShellState, shell_floor

NONCE = "ab12" * 8


def tokenize_split(data: bytes, at: int) -> list[Key]:
    tok = KeyTokenizer()
    keys = tok.feed(data[:at]) + tok.feed(data[at:])
    return keys + tok.flush()


def merged(keys: list[Key]) -> list[Key]:
    out: list[Key] = []
    for k in keys:
        if isinstance(k, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + k.text)
        else:
            out.append(k)
    return out


SAMPLE = ("ls é€😀\t\x1b[A\x1bOB\x1b[3~\x1b.\x7f\x15\x1b[200~a\nb\x1b[201~\x1b]0;t\x07x\r").encode()


def test_tokenizer_same_keys_at_every_split() -> None:
    """Keys are identical however the input is split (UTF-8, CSI, SS3, OSC, paste)."""
    whole = merged(tokenize_split(SAMPLE, len(SAMPLE)))
    assert whole == [
        Text("ls é€😀"),
        Control(9),
        Escape(b"\x1b[A"),
        Escape(b"\x1bOB"),
        Escape(b"\x1b[3~"),
        Escape(b"\x1b."),
        Control(0x7F),
        Control(0x15),
        Paste(b"a\nb"),
        Escape(b"\x1b]0;t\x07"),
        Text("x"),
        Control(13),
    ]
    for at in range(1, len(SAMPLE)):
        assert merged(tokenize_split(SAMPLE, at)) == whole, at


def test_tokenizer_lone_escape_is_flushed_and_names_keys() -> None:
    """A lone ESC waits for more bytes, then becomes an Escape key; arrows are named."""
    tok = KeyTokenizer()
    assert tok.feed(b"\x1b") == [] and tok.pending
    assert tok.flush() == [Escape(b"\x1b")]
    assert Escape(b"\x1b[A").name == "Up" and Escape(b"\x1bx").name == "Alt-key"


def test_line_buffer_edits() -> None:
    """Backspace, Ctrl-W and Ctrl-U change the buffer as readline would; echo erases cells."""
    buf = LineBuffer()
    buf.insert("git  commit -m 語")
    assert buf.backspace() == b"\b \b" * 2  # a wide character takes two cells
    assert buf.kill_word() == b"\b \b" * 3  # "-m " back to the previous word boundary
    assert buf.current == "git  commit "
    buf.kill_line()
    assert buf.empty and buf.backspace() is None
    buf.insert("for i in 1; do")
    buf.newline()
    buf.insert("done")
    assert buf.text() == "for i in 1; do\ndone"


def markers_split(data: bytes, at: int) -> list[Any]:
    parser = MarkerParser(NONCE)
    segs = parser.feed(data[:at]) + parser.feed(data[at:])
    out: list[Any] = []
    for s in [*segs, parser.flush()]:
        if isinstance(s, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += s
        elif s != b"":
            out.append(s)
    return out


def test_marker_parser_every_split() -> None:
    """Markers are found and removed at every split point; foreign ones are marked invalid."""
    cmd = "echo 'a\nb'\t\\x"
    data = (
        b"out\x1b[1m\x1b]0;title\x07"
        + f"\x1b]133;C;{NONCE};{escape(cmd)}\x07".encode()
        + b"mid\x1b]133;A;fake\x07"
        + f"\x1b]133;D;{NONCE};0\x1b\\".encode()
        + b"end\x1b"
    )
    expect = [
        b"out\x1b[1m\x1b]0;title\x07",
        Marker("C", True, cmd),
        b"mid",
        Marker("A", False, ""),
        Marker("D", True, "0"),
        b"end\x1b",
    ]
    for at in range(len(data) + 1):
        assert markers_split(data, at) == expect, at
    assert unescape(escape("\\n\n\x1b")) == "\\n\n\x1b"


def test_marker_parser_bounds_an_unterminated_marker() -> None:
    """An OSC 133 that never ends is released as plain output once past the size bound."""
    parser = MarkerParser(NONCE)
    from bastion.interactive import markers

    big = b"\x1b]133;C;" + b"x" * (markers.MAX_MARKER + 10)
    segs = parser.feed(big)
    assert b"".join(s for s in segs if isinstance(s, bytes)) + parser.flush() == big


@dataclass
class FakeEffects:
    target: bytearray = field(default_factory=bytearray)
    agent: bytearray = field(default_factory=bytearray)
    decisions: list[tuple[int, str]] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    audits: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    timers: set[str] = field(default_factory=set)
    cancelled: list[str] = field(default_factory=list)

    def to_target(self, data: bytes) -> None:
        self.target += data

    def to_agent(self, data: bytes) -> None:
        self.agent += data

    def record_input(self, data: bytes) -> None:
        pass

    def marker(self, text: str) -> None:
        pass

    def decide(self, unit_id: int, unit: str) -> None:
        self.decisions.append((unit_id, unit))

    def cancel_decide(self, reason: str) -> None:
        self.cancelled.append(reason)

    def end(self, message: str) -> None:
        self.ended.append(message)

    def audit(self, kind: str, **fields: object) -> None:
        self.audits.append((kind, fields))

    def set_timer(self, name: str, delay: float) -> None:
        self.timers.add(name)

    def cancel_timer(self, name: str) -> None:
        self.timers.discard(name)


@dataclass
class V:
    action: str
    message: str = ""
    details: Mapping[str, object] = field(default_factory=dict)


def mk(kind: str, payload: str = "", nonce: str = NONCE) -> bytes:
    return f"\x1b]133;{kind};{nonce};{escape(payload)}\x07".encode()


def ready_core(config: InteractiveConfig | None = None) -> tuple[ShellCore, FakeEffects]:
    fx = FakeEffects()
    core = ShellCore(fx, config or InteractiveConfig(), NONCE, ShellState())
    core.start()
    assert NONCE.encode() in fx.target  # the snippet carries the nonce
    core.target_output(
        b"banner " + NONCE.encode() + mk("D", "0") + mk("A", "/home/u") + b"u$ " + mk("B")
    )
    assert core.state is State.AT_PROMPT and bytes(fx.agent) == b"u$ "
    assert core.shell.cwd == "/home/u"
    fx.target.clear()
    fx.agent.clear()
    return core, fx


def test_core_allowed_line_is_delivered_and_verified() -> None:
    """Enter decides the unit, delivers it as a bracketed paste, and C/D confirm it."""
    core, fx = ready_core()
    core.agent_input(b"echo hi\r")
    assert fx.agent == b"echo hi\r\n" and fx.decisions == [(1, "echo hi")]
    assert fx.target == b""  # nothing reaches the target before the verdict
    core.decided(1, V("allow"))
    assert fx.target == b"\x15\x1b[200~echo hi\x1b[201~\r"
    core.target_output(
        b"echo hi redraw\r\n"
        + mk("C", "echo hi")
        + b"hi\r\n"
        + mk("D", "0")
        + mk("A", "/tmp")
        + b"u$ "
        + mk("B")
    )
    assert not fx.ended
    assert fx.agent.endswith(b"hi\r\nu$ ") and b"redraw" not in fx.agent
    assert ("shell_command_finished", {"exit_status": 0}) in fx.audits


def test_core_mismatched_or_unexpected_command_ends_the_session() -> None:
    """A C marker for another command, or one nobody delivered, ends the session."""
    core, fx = ready_core()
    core.agent_input(b"echo hi\r")
    core.decided(1, V("allow"))
    core.target_output(mk("C", "rm -rf ~"))
    assert fx.ended and "different command" in fx.ended[0]
    core, fx = ready_core()
    core.target_output(mk("C", "ls"))
    assert fx.ended and "did not deliver" in fx.ended[0]


def test_core_denied_line_never_reaches_target_and_prompt_returns() -> None:
    """A deny prints one line and the saved prompt; the target gets nothing."""
    core, fx = ready_core()
    core.agent_input(b"rm -rf /\r")
    core.decided(1, V("deny", "denied by policy: nope"))
    assert fx.target == b""
    assert fx.agent.endswith(b"bastion: denied by policy: nope\r\nu$ ")
    assert core.state is State.AT_PROMPT


def test_core_multiline_unit_and_type_ahead() -> None:
    """Incomplete lines continue with '> '; keys typed while deciding are kept in order."""
    core, fx = ready_core()
    core.agent_input(b"for i in 1; do\recho $i\rdone\rls\r")
    assert fx.decisions == [(1, "for i in 1; do\necho $i\ndone")]
    core.decided(1, V("deny", "no"))
    assert fx.decisions[-1] == (2, "ls")


def test_core_dropped_keys_and_frozen_input() -> None:
    """Tab/arrows/Ctrl-R never reach the target; while running only Ctrl-C/D/Z pass."""
    core, fx = ready_core()
    core.agent_input(b"ls\t\x1b[A\x12\x16")
    assert fx.target == b"" and b"Tab (completion) is not forwarded" in fx.agent
    core.agent_input(b"\r")
    core.decided(1, V("allow"))
    core.target_output(mk("C", "ls"))
    fx.target.clear()
    core.agent_input(b"rm -rf ~\r\x1a")
    assert fx.target == b"\x1a" and b"input ignored" in fx.agent


def test_core_nonce_in_output_ends_the_session() -> None:
    """If a program prints the session nonce (it could forge markers), the session ends."""
    core, fx = ready_core()
    core.agent_input(b"echo x\r")
    core.decided(1, V("allow"))
    core.target_output(mk("C", "echo x") + NONCE[:10].encode())
    core.target_output(NONCE[10:].encode())
    assert fx.ended and "secret" in fx.ended[0]


def test_core_fallback_refuse_and_review() -> None:
    """Without markers the session ends (refuse) or every line is held (review)."""
    fx = FakeEffects()
    core = ShellCore(fx, InteractiveConfig(), NONCE, ShellState())
    core.start()
    core.target_output(b"sh-5$ ")
    core.timer("integration")
    assert fx.ended and "cannot verify" in fx.ended[0]
    fx = FakeEffects()
    core = ShellCore(fx, InteractiveConfig(fallback="review"), NONCE, ShellState())
    core.start()
    core.timer("integration")
    fx.target.clear()
    core.agent_input(b"ls\r")
    assert fx.target == b"" and not fx.decisions and b"held for review" in fx.agent


def test_core_interactive_program_gets_input_passed_through() -> None:
    """An allowed interactive program receives raw input until the command ends."""
    core, fx = ready_core()
    core.agent_input(b"psql\r")
    core.decided(1, V("allow", details={"interactive": "psql"}))
    core.target_output(mk("C", "psql"))
    fx.target.clear()
    core.agent_input(b"select 1;\r")
    assert fx.target == b"select 1;\r"
    assert any(k == "shell_interactive" for k, _ in fx.audits)
    core.target_output(mk("D", "0") + mk("A", "/") + mk("B"))
    fx.target.clear()
    core.agent_input(b"x")
    assert fx.target == b""


def test_shell_floor_names_programs_and_definitions() -> None:
    """PTY floors: integration names, session-defined names and full-screen programs."""
    assert shell_floor("echo $PS1", [("echo", "$PS1")], None) is not None
    state = ShellState()
    state.learn("deploy() { ls; }; alias ll2='ls'")
    assert {"deploy", "ll2"} <= state.defined
    floor = shell_floor("deploy", [("deploy",)], state)
    assert floor is not None and floor.rule == "shell-defined-name"
    assert shell_floor("less x", [("less", "x")], state) is not None
    assert shell_floor("python3 x.py", [("python3", "x.py")], state) is None
    state.passthrough = ("less",)
    assert shell_floor("less x", [("less", "x")], state) is None


def test_interactive_config_validation(tmp_path: Any) -> None:
    """The [interactive] section is validated; unknown keys and bad values are errors."""
    cfg = parse_interactive_config(
        {"fallback": "review", "integration_timeout": "5s", "passthrough": ["psql"]}, tmp_path
    )
    assert cfg.fallback == "review" and cfg.integration_timeout == 5.0
    for bad in ({"fallback": "allow"}, {"typo": 1}, {"max_unit": 0}, {"passthrough": "psql"}):
        with pytest.raises(ConfigError):
            parse_interactive_config(bad, tmp_path)


def test_ctrl_c_while_deciding_cancels_the_decision_and_a_late_verdict_is_stale() -> None:
    """Ctrl-C during a hold cancels the decision (the driver abandons the request); an approval
    arriving afterwards delivers nothing; Ctrl-C at an idle prompt cancels nothing."""
    core, fx = ready_core()
    core.agent_input(b"\x03")
    assert fx.cancelled == []
    core.agent_input(b"az group delete -n rg --yes\r")
    assert core.state is State.DECIDING
    core.agent_input(b"\x03")
    assert fx.cancelled == ["the agent interrupted the held line (Ctrl-C)"]
    assert core.state is State.AT_PROMPT
    fx.target.clear()
    core.decided(fx.decisions[-1][0], V("allow"))
    assert fx.target == b""
