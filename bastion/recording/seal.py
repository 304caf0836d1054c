"""Signed records of the seal sidecar (``<name>.cast.seal``, one JSON object per line).

``open`` is written when the recording starts, ``checkpoint`` after each periodic fsync, ``seal``
at close. Each record names the file, how many events and bytes it covers, the chain digest at
that point, and carries an Ed25519 signature over its canonical JSON (sorted keys, no ``sig``).
A crash leaves the last checkpoint as proof of everything up to it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson

from bastion.recording.keys import RecordingKey, RecordingPublicKey

SEAL_DOMAIN = b"bastion-recording-seal-v1\n"
SEAL_SUFFIX = ".seal"
RECORD_TYPES = ("open", "checkpoint", "seal")


def _payload(fields: dict[str, Any]) -> bytes:
    body = {k: v for k, v in fields.items() if k != "sig"}
    return SEAL_DOMAIN + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign_record(key: RecordingKey, fields: dict[str, Any]) -> dict[str, Any]:
    signed = dict(fields)
    signed["key_id"] = key.key_id
    signed["sig"] = base64.b64encode(key.sign(_payload(signed))).decode("ascii")
    return signed


def encode_record(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"


def check_record(record: dict[str, Any], trusted: Sequence[RecordingPublicKey]) -> str | None:
    """Return None when a trusted key signed exactly this record, else the reason it fails."""
    sig_text = record.get("sig")
    key_id = record.get("key_id")
    if not isinstance(sig_text, str) or not isinstance(key_id, str):
        return "record has no signature"
    try:
        signature = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        return "signature is not base64"
    keys = [k for k in trusted if k.key_id == key_id]
    if not keys:
        return f"signed by untrusted key {key_id}"
    payload = _payload(record)
    if any(k.verify(signature, payload) for k in keys):
        return None
    return "signature does not verify with the trusted recording key (seal replaced or forged)"
