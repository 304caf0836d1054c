"""The ``[masking]`` configuration section (keys documented in docs/masking.md)."""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError
from bastion.masking.catalog import DEFAULT_RULES
from bastion.masking.known import MIN_KNOWN_LENGTH
from bastion.masking.masker import DEFAULT_HOLD_TIMEOUT, DEFAULT_MAX_HOLD, StreamMasker
from bastion.masking.rules import Rule, not_placeholder

_KEYS = {"enabled", "replacement", "rules", "known_values_file", "mask_input", "engine",
         "hold_timeout_ms", "max_hold_bytes", "disable_rules"}
_RULE_KEYS = {"id", "regex", "keywords", "prefix", "secret_group", "lookback", "description",
              "ignore_case"}
_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,63}")
_REPLACEMENTS = ("label", "same-length")


@dataclass(frozen=True)
class MaskingConfig:
    enabled: bool = True
    replacement: str = "label"  # for non-PTY streams; PTY streams are always same-length
    rules: tuple[Rule, ...] = DEFAULT_RULES
    known_values: tuple[bytes, ...] = ()
    mask_input: bool = True
    engine: str | None = None
    hold_timeout: float = DEFAULT_HOLD_TIMEOUT
    max_hold: int = DEFAULT_MAX_HOLD

    def new_masker(self, pty: bool) -> StreamMasker:
        """A masker for one stream. With ``enabled = false`` it masks nothing (but still
        strips OSC 52 clipboard writes)."""
        rules = self.rules if self.enabled else ()
        known = self.known_values if self.enabled else ()
        return StreamMasker(rules, pty=pty or self.replacement == "same-length",
                            engine=self.engine, known_values=known,
                            hold_timeout=self.hold_timeout, max_hold=self.max_hold)


def _bool(section: Mapping[str, Any], key: str, default: bool) -> bool:
    v = section.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"masking.{key}", "must be true or false")
    return v


def _int(section: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = section.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"masking.{key}", f"must be an integer between {lo} and {hi}")
    return v


def _str_list(where: str, v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(where, "must be a list of non-empty strings")
    return list(v)


def _custom_rule(i: int, raw: Any, taken: set[str]) -> Rule:
    where = f"masking.rules[{i}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "must be a table")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ConfigError(where, f"unknown key(s): {', '.join(sorted(unknown))}")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        raise ConfigError(f"{where}.id", "must be lower-case letters, digits and '-' (2-64)")
    if rid in taken:
        raise ConfigError(f"{where}.id", f"duplicate rule id {rid!r}")
    regex = raw.get("regex")
    if not isinstance(regex, str) or not regex:
        raise ConfigError(f"{where}.regex", "must be a non-empty string")
    flags = re.I if raw.get("ignore_case", False) is True else 0
    group = raw.get("secret_group")
    pattern = regex
    if group is not None:
        if not isinstance(group, str) or not group.isidentifier():
            raise ConfigError(f"{where}.secret_group", "must be the name of a (?P<name>...) group")
        pattern = regex.replace(f"(?P<{group}>", "(?P<s>", 1)
        if pattern == regex:
            raise ConfigError(f"{where}.secret_group", f"no group named {group!r} in regex")
    try:
        compiled = re.compile(pattern.encode(), flags)
    except (re.error, UnicodeEncodeError) as exc:
        raise ConfigError(f"{where}.regex", f"invalid regular expression: {exc}") from None
    if compiled.fullmatch(b"") is not None:
        raise ConfigError(f"{where}.regex", "matches the empty string")
    keywords = _str_list(f"{where}.keywords", raw.get("keywords", []))
    prefix = raw.get("prefix")
    if prefix is not None:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"{where}.prefix", "must be a non-empty string")
        keywords.append(prefix)
    lookback = raw.get("lookback", 0)
    if isinstance(lookback, bool) or not isinstance(lookback, int) or not 0 <= lookback <= 512:
        raise ConfigError(f"{where}.lookback", "must be an integer between 0 and 512")
    desc = raw.get("description", f"custom rule {rid}")
    if not isinstance(desc, str):
        raise ConfigError(f"{where}.description", "must be a string")
    return Rule(rid, desc, pattern.encode(), tuple(k.encode() for k in keywords),
                lookback=lookback, flags=flags, check=not_placeholder, strong=prefix is not None)


def _known_values(path_value: Any, base_dir: Path) -> tuple[bytes, ...]:
    where = "masking.known_values_file"
    if not isinstance(path_value, str) or not path_value:
        raise ConfigError(where, "must be a path")
    path = Path(path_value)
    if not path.is_absolute():
        path = base_dir / path
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where} ({path})", f"cannot read: {exc.strerror}") from None
    if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(f"{where} ({path})", "must not be world-readable (chmod o-rw)")
    values: list[bytes] = []
    for n, line in enumerate(data.splitlines(), 1):
        v = line.rstrip(b"\r")
        if not v.strip() or v.lstrip().startswith(b"#"):
            continue
        if len(v) < MIN_KNOWN_LENGTH:
            raise ConfigError(f"{where} ({path}) line {n}",
                              f"value shorter than {MIN_KNOWN_LENGTH} characters")
        values.append(v)
    return tuple(values)


def load_masking_config(section: Mapping[str, Any], base_dir: Path) -> MaskingConfig:
    """Parse the ``[masking]`` table; raises ConfigError(where, reason)."""
    if not isinstance(section, Mapping):
        raise ConfigError("masking", "must be a table")
    unknown = set(section) - _KEYS
    if unknown:
        raise ConfigError("masking", f"unknown key(s): {', '.join(sorted(unknown))}")
    enabled = _bool(section, "enabled", True)
    mask_input = _bool(section, "mask_input", True)
    replacement = section.get("replacement", "label")
    if replacement not in _REPLACEMENTS:
        raise ConfigError("masking.replacement", "must be \"label\" or \"same-length\"")
    engine = section.get("engine", "auto")
    if engine not in ("auto", "hyperscan", "python"):
        raise ConfigError("masking.engine", "must be \"auto\", \"hyperscan\" or \"python\"")
    hold_ms = _int(section, "hold_timeout_ms", int(DEFAULT_HOLD_TIMEOUT * 1000), 1, 1000)
    max_hold = _int(section, "max_hold_bytes", DEFAULT_MAX_HOLD, 256, 1 << 20)
    disabled = set(_str_list("masking.disable_rules", section.get("disable_rules", [])))
    default_ids = {r.id for r in DEFAULT_RULES}
    bad = disabled - default_ids
    if bad:
        raise ConfigError("masking.disable_rules", f"unknown rule id(s): {', '.join(sorted(bad))}")
    rules = [r for r in DEFAULT_RULES if r.id not in disabled]
    raw_rules = section.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError("masking.rules", "must be an array of tables ([[masking.rules]])")
    taken = set(default_ids)
    for i, raw in enumerate(raw_rules):
        rule = _custom_rule(i, raw, taken)
        taken.add(rule.id)
        rules.append(rule)
    known: tuple[bytes, ...] = ()
    if "known_values_file" in section:
        known = _known_values(section["known_values_file"], base_dir)
    return MaskingConfig(
        enabled=enabled, replacement=replacement, rules=tuple(rules), known_values=known,
        mask_input=mask_input, engine=None if engine == "auto" else engine,
        hold_timeout=hold_ms / 1000, max_hold=max_hold,
    )
