"""RecordingStore: creates recorders under one root and syncs all open ones on an interval.

One asyncio task per store does the periodic flush + fsync + signed checkpoint, so a crash (even
``kill -9``) loses at most about one interval and leaves a file verifiable up to the cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bastion.recording.config import RecordingConfig
from bastion.recording.errors import RecordingError
from bastion.recording.keys import RecordingKey
from bastion.recording.recorder import DEFAULT_BUFFER, Recorder

log = logging.getLogger(__name__)

ErrorHandler = Callable[[Recorder, RecordingError], None]


class RecordingStore:
    def __init__(
        self,
        root: Path,
        key: RecordingKey,
        *,
        fsync_interval: float = 1.0,
        record_input: bool = True,
        buffer_limit: int = DEFAULT_BUFFER,
        on_error: ErrorHandler | None = None,
    ) -> None:
        if fsync_interval <= 0:
            raise ValueError("fsync_interval must be positive")
        self.root = Path(root)
        self.key = key
        self.fsync_interval = fsync_interval
        self.record_input = record_input
        self._buffer_limit = buffer_limit
        self._on_error = on_error
        self._open: set[Recorder] = set()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(
        cls, config: RecordingConfig, *, on_error: ErrorHandler | None = None
    ) -> RecordingStore:
        """Build from the parsed ``[recording]`` section (creates the signing key on first use)."""
        key = RecordingKey.load_or_create(config.key_file.parent, config.key_file.name)
        return cls(
            config.dir,
            key,
            fsync_interval=config.fsync_interval,
            record_input=config.record_input,
            on_error=on_error,
        )

    def create(
        self,
        *,
        session_id: str,
        channel: int,
        meta: Mapping[str, Any] | None = None,
        width: int = 80,
        height: int = 24,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
        title: str | None = None,
    ) -> Recorder:
        """Open a recorder that this store keeps synced until it is closed."""
        rec = Recorder.create(
            root=self.root,
            session_id=session_id,
            channel=channel,
            key=self.key,
            meta=meta,
            width=width,
            height=height,
            command=command,
            env=env,
            title=title,
            record_input=self.record_input,
            buffer_limit=self._buffer_limit,
        )
        rec.on_close = self._open.discard
        self._open.add(rec)
        return rec

    @property
    def open_recorders(self) -> frozenset[Recorder]:
        return frozenset(self._open)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="recording-sync")

    async def stop(self) -> None:
        """Stop the sync task and checkpoint what is still open (owners still close them)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sync_all()

    async def sync_all(self) -> None:
        recorders = list(self._open)
        results = await asyncio.gather(*(r.sync() for r in recorders), return_exceptions=True)
        for rec, result in zip(recorders, results, strict=True):
            if isinstance(result, RecordingError):
                self._open.discard(rec)
                log.error(
                    "recording failed",
                    extra={"session_id": rec.session_id, "channel": rec.channel},
                )
                if self._on_error is not None:
                    self._on_error(rec, result)
            elif isinstance(result, BaseException):
                raise result

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_interval)
            await self.sync_all()
