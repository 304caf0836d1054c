"""Required per-channel sinks: every channel is recorded (asciicast, sealed) and audited.

A channel whose recording cannot be created is refused; one whose recording fails mid-session
is ended. Nothing is relayed unrecorded.
"""

from __future__ import annotations

import logging

from bastion.audit import AuditError, AuditStore
from bastion.hooks import ChannelSink, SinkError, filter_text
from bastion.masking import MaskingConfig, StreamMasker
from bastion.model import ChannelRequest, SessionInfo
from bastion.recording import Recorder, RecordingError, RecordingStore

log = logging.getLogger("bastion.sinks")


class RecordedChannel:
    """One channel's recorder; every write failure becomes ``SinkError``."""

    def __init__(
        self,
        recorder: Recorder,
        audit: AuditStore,
        session: SessionInfo,
        input_masker: StreamMasker | None,
    ) -> None:
        self.recorder = recorder
        self.audit = audit
        self.session = session
        self.input_masker = input_masker

    def input(self, data: bytes) -> None:
        if self.input_masker is not None:
            data = self.input_masker.feed(data)
        try:
            if data:
                self.recorder.input(data)
        except RecordingError as exc:
            raise SinkError(f"recording failed ({exc}); the session was ended") from None

    def output(self, data: bytes, stderr: bool) -> None:
        try:
            self.recorder.output(data)
        except RecordingError as exc:
            raise SinkError(f"recording failed ({exc}); the session was ended") from None

    def resize(self, width: int, height: int) -> None:
        try:
            self.recorder.resize(width, height)
        except RecordingError as exc:
            raise SinkError(f"recording failed ({exc}); the session was ended") from None

    def marker(self, text: str) -> None:
        try:
            self.recorder.marker(text)
        except RecordingError as exc:
            raise SinkError(f"recording failed ({exc}); the session was ended") from None

    async def close(self, exit_status: int | None, reason: str) -> None:
        s = self.session
        try:
            if self.input_masker is not None and (rest := self.input_masker.flush()):
                self.recorder.input(rest)
            seal = await self.recorder.close(exit_status)
        except RecordingError as exc:
            log.error(
                "recording.seal_failed", extra={"ctx": {"session": s.session_id, "error": str(exc)}}
            )
            return
        try:
            await self.audit.record(
                "recording_sealed",
                session_id=s.session_id,
                identity=s.identity.key_id,
                target=s.target,
                login=s.login,
                **seal.audit_fields(),
            )
        except AuditError as exc:
            log.error("audit.failed", extra={"ctx": {"session": s.session_id, "error": str(exc)}})


class RecordingSinkFactory:
    def __init__(
        self, recordings: RecordingStore, audit: AuditStore, input_masking: MaskingConfig | None
    ) -> None:
        self.recordings = recordings
        self.audit = audit
        self.input_masking = input_masking

    async def open(
        self, session: SessionInfo, channel_no: int, request: ChannelRequest
    ) -> ChannelSink:
        ident = session.identity
        width, height = request.term_size[0] or 80, request.term_size[1] or 24
        env = {k: v for k, v in request.env.items() if k in ("TERM", "SHELL")}
        if request.term_type:
            env.setdefault("TERM", request.term_type)
        command = request.command
        if command is not None and self.input_masking is not None:  # the header is input too
            command = filter_text(self.input_masking.new_masker(False), command)
        try:
            recorder = self.recordings.create(
                session_id=session.session_id,
                channel=channel_no,
                meta={
                    "identity": ident.key_id,
                    "serial": ident.serial,
                    "principals": list(ident.principals),
                    "target": session.target,
                    "login": session.login,
                    "source": session.source_address,
                    "kind": request.kind,
                },
                width=width,
                height=height,
                command=command,
                env=env,
                title=f"{ident.key_id} -> {session.login}@{session.target}",
            )
        except RecordingError as exc:
            raise SinkError(f"cannot record this session ({exc}); refusing") from None
        masker = self.input_masking.new_masker(False) if self.input_masking else None
        return RecordedChannel(recorder, self.audit, session, masker)
