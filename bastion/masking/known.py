"""Exact known secret values (e.g. from ``known_values_file``) as rules.

Each value is also matched in the encodings it is commonly printed in: base64, URL
percent-encoding and JSON string escaping. Values shorter than ``MIN_KNOWN_LENGTH`` are
refused by the config loader: masking every short substring would wreck ordinary output.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterable
from urllib.parse import quote

from bastion.masking.rules import Rule

MIN_KNOWN_LENGTH = 8


def derived_forms(value: bytes) -> list[bytes]:
    forms = [value]
    b64 = base64.b64encode(value)
    forms += [b64, b64.rstrip(b"=")]
    forms.append(quote(value, safe="").encode())
    with contextlib.suppress(UnicodeDecodeError):
        forms.append(json.dumps(value.decode("utf-8"))[1:-1].encode())
    out: list[bytes] = []
    for f in forms:
        if len(f) >= MIN_KNOWN_LENGTH and f not in out:
            out.append(f)
    return out


def known_value_rules(values: Iterable[bytes]) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for value in values:
        forms = derived_forms(value)
        if not forms:
            continue
        # longest first so the padded base64 form wins over its unpadded prefix
        forms.sort(key=len, reverse=True)
        pattern = b"|".join(re.escape(f) for f in forms)
        rules.append(Rule("known-value", "exact known secret value", pattern, tuple(forms),
                          strong=True))
    return tuple(rules)
