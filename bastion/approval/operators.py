"""Operators: named humans who approve held commands, each with a TOTP secret.

Secrets live in the shared database (``<state_dir>/bastion.db``), created 0600 in a 0700 state
directory (``bastion.audit.db.create_private``): whoever can read it can mint codes, so it is
protected like a private key. A code counts once: the last accepted time step is stored per
operator, and a code from that step or an earlier one is refused. Five wrong codes in a row on
the CLI or in Slack lock the operator for five minutes; the web page counts its own failures
(``bastion.approval.guard``) so an agent cannot trigger that lock.
"""

from __future__ import annotations

import hmac
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiosqlite
import orjson
import pyotp

from bastion.audit.db import Database
from bastion.errors import BastionError

TOTP_STEP = 30
TOTP_DIGITS = 6
TOTP_WINDOW = 1  # steps accepted either side of now (clock drift, slow typing)
MAX_FAILURES = 5
LOCKOUT_SECONDS = 300.0
ISSUER = "bastion"

_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_COLUMNS = (
    "name, groups, identities, slack_id, email, totp_secret, last_step, failures, locked_until, "
    "created_at"
)


@dataclass(frozen=True)
class Operator:
    name: str
    groups: tuple[str, ...]
    identities: tuple[str, ...]  # agent key IDs / principals this human acts as (no self-approval)
    slack_id: str | None
    email: str | None
    totp_secret: str
    last_step: int
    failures: int
    locked_until: float
    created_at: float

    def public(self) -> dict[str, object]:
        """Everything but the secret (for ``operators list``)."""
        return {
            "name": self.name,
            "groups": list(self.groups),
            "identities": list(self.identities),
            "slack_id": self.slack_id,
            "email": self.email,
            "created_at": self.created_at,
        }

    def provisioning_uri(self) -> str:
        totp = pyotp.TOTP(self.totp_secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
        return totp.provisioning_uri(name=self.name, issuer_name=ISSUER)

    def is_linked_to(self, key_id: str, principals: Sequence[str]) -> bool:
        """True when this operator is (or acts as) the requester: self-approval is refused."""
        requester = {key_id, *principals}
        return self.name == key_id or any(i in requester for i in self.identities)

    def may_approve_for(self, approver_groups: Sequence[str]) -> bool:
        """A rule naming no group accepts any enrolled operator; otherwise one group must match."""
        return not approver_groups or any(g in self.groups for g in approver_groups)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BastionError(
            f"invalid operator name {name!r}: use lower-case letters, digits, '.', '_', '-' "
            "(max 32, starting with a letter)"
        )
    return name


def check_group(group: str) -> str:
    if not _GROUP.match(group):
        raise BastionError(f"invalid group name {group!r}")
    return group


def match_totp(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` belongs to (within the window around ``now``), or None."""
    code = "".join(code.split())
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
    current = int(now // TOTP_STEP)
    found = None
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        # compare every candidate (no early exit) so timing does not reveal which step matched
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def _row(r: Sequence[object]) -> Operator:
    return Operator(
        name=str(r[0]),
        groups=tuple(orjson.loads(str(r[1]))),
        identities=tuple(orjson.loads(str(r[2]))),
        slack_id=None if r[3] is None else str(r[3]),
        email=None if r[4] is None else str(r[4]),
        totp_secret=str(r[5]),
        last_step=int(str(r[6])),
        failures=int(str(r[7])),
        locked_until=float(str(r[8])),
        created_at=float(str(r[9])),
    )


async def load_operator(conn: aiosqlite.Connection, name: str) -> Operator | None:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM approval_operators WHERE name = ?",  # noqa: S608
        (name,),
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else _row(tuple(row))


class OperatorStore:
    """Enrol, list and remove operators (the broker verifies their codes in its transactions)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def add(
        self,
        name: str,
        *,
        groups: Sequence[str] = (),
        identities: Sequence[str] = (),
        slack_id: str | None = None,
        email: str | None = None,
    ) -> Operator:
        """Enrol ``name`` with a fresh TOTP secret; refuses an existing name (remove it first)."""
        check_name(name)
        for group in groups:
            check_group(group)
        secret = pyotp.random_base32(length=32)  # 160 bits, as RFC 4226 recommends
        try:
            async with self.db.transaction() as conn:
                if await load_operator(conn, name) is not None:
                    raise BastionError(f"operator {name!r} already exists")
                await conn.execute(
                    "INSERT INTO approval_operators (name, groups, identities, slack_id, email, "
                    "totp_secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        orjson.dumps(sorted(set(groups))).decode(),
                        orjson.dumps(sorted(set(identities))).decode(),
                        slack_id,
                        email,
                        secret,
                        self.clock(),
                    ),
                )
                operator = await load_operator(conn, name)
        except sqlite3.Error as exc:
            raise BastionError(f"cannot enrol operator: {exc}") from None
        assert operator is not None
        return operator

    async def get(self, name: str) -> Operator | None:
        return await load_operator(self.db.conn, name)

    async def by_slack_id(self, slack_id: str) -> Operator | None:
        """The operator enrolled with ``--slack-id``; None when nobody (or several) match."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM approval_operators WHERE slack_id = ? LIMIT 2",  # noqa: S608
            (slack_id,),
        )
        return _row(tuple(rows[0])) if len(rows) == 1 else None

    async def list(self) -> list[Operator]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM approval_operators ORDER BY name"  # noqa: S608
        )
        return [_row(tuple(r)) for r in rows]

    async def remove(self, name: str) -> None:
        async with self.db.transaction() as conn:
            cur = await conn.execute("DELETE FROM approval_operators WHERE name = ?", (name,))
            if cur.rowcount != 1:
                raise BastionError(f"no operator named {name!r}")
