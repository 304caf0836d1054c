"""From verified claims to certificate contents: principals and key ID.

Deny by default: a token that matches no ``[[oidc.grants]]`` entry gets no certificate. A grant
matches when every claim it names holds one of its values (all of the claims; any of a claim's
values). Values match exactly (no patterns, no case folding); a list claim such as ``roles`` or
``groups`` matches when it contains a value.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.identity.config import Grant
from bastion.identity.tokens import VerifiedToken

MAX_KEY_ID_CHARS = 200


def principals_for(token: VerifiedToken, grants: Sequence[Grant]) -> tuple[str, ...]:
    """The sorted union of the principals of every grant the token matches (may be empty)."""
    found: set[str] = set()
    for grant in grants:
        if grant.issuer and grant.issuer != token.issuer.issuer:
            continue
        if all(_holds(token.claims.get(claim), wanted) for claim, wanted in grant.conditions):
            found.update(grant.principals)
    return tuple(sorted(found))


def _clean(text: str) -> str:
    """Printable, no spaces (the first space separates the stable part from the name)."""
    return "".join(c if c.isprintable() and not c.isspace() else "_" for c in text)


def key_id_for(token: VerifiedToken) -> str:
    """``<tenant>/<subject>`` plus `` (<display name>)`` when the token carries one.

    The part before the first space is stable for an identity (Entra: tenant and object id);
    revocation by key ID matches it, so a renamed app stays revoked.
    """
    stable = f"{_clean(token.tenant)}/{_clean(token.subject)}"
    name = " ".join(token.display_name.split())
    name = "".join(c for c in name if c.isprintable() and c not in "()")
    key_id = f"{stable} ({name})" if name else stable
    return key_id[:MAX_KEY_ID_CHARS]


def _holds(claim: object, wanted: Sequence[str]) -> bool:
    values = claim if isinstance(claim, list) else [claim]
    return any(isinstance(v, str) and v in wanted for v in values)
