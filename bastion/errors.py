"""Errors that reach a user as one readable line (never a traceback)."""

from __future__ import annotations


class BastionError(Exception):
    """Base class: the message is shown to the user as is, on one line."""


class ConfigError(BastionError):
    """A configuration file, key or referenced file is wrong.

    The message names the file, the key and the reason, e.g.
    ``config.toml: targets[0].host_key: not a valid OpenSSH public key``.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
