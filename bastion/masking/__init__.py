"""Streaming secret masker for proxied output and recordings (see docs/masking.md)."""

from __future__ import annotations

from bastion.masking.catalog import DEFAULT_RULES, all_rule_ids
from bastion.masking.config import MaskingConfig, load_masking_config
from bastion.masking.masker import StreamMasker
from bastion.masking.rules import Rule

__all__ = [
    "DEFAULT_RULES",
    "MaskingConfig",
    "Rule",
    "StreamMasker",
    "all_rule_ids",
    "load_masking_config",
]
