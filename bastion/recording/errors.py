"""The one error type of the recording package."""

from __future__ import annotations

from bastion.errors import BastionError


class RecordingError(BastionError):
    """A recording could not be created, written, synced or sealed.

    Recording is a required sink: the caller ends (or refuses) the session when this is raised.
    """
