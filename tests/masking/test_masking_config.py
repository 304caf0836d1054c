"""The [masking] configuration section: defaults, custom rules, known values, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from masking_corpus import B62, Gen

from bastion.errors import ConfigError
from bastion.masking import DEFAULT_RULES, MaskingConfig, load_masking_config


def _mask(cfg: MaskingConfig, data: bytes, pty: bool = False) -> bytes:
    m = cfg.new_masker(pty=pty)
    return m.feed(data) + m.flush()


def _token() -> bytes:
    return ("ghp_" + Gen(21).s(B62, 36)).encode()


def test_empty_section_gives_defaults(tmp_path: Path) -> None:
    """No keys: enabled, labelled markers, all default rules, input masking on."""
    cfg = load_masking_config({}, tmp_path)
    assert (cfg.enabled, cfg.replacement, cfg.mask_input) == (True, "label", True)
    assert cfg.rules == DEFAULT_RULES
    assert _mask(cfg, b"t " + _token() + b"\n") == b"t [MASKED:github-token]\n"


def test_same_length_replacement_applies_to_non_pty_streams(tmp_path: Path) -> None:
    """replacement = "same-length" keeps lengths even for exec streams."""
    cfg = load_masking_config({"replacement": "same-length"}, tmp_path)
    tok = _token()
    assert _mask(cfg, b"t " + tok + b"\n") == b"t " + b"*" * len(tok) + b"\n"


def test_pty_streams_are_always_same_length(tmp_path: Path) -> None:
    """new_masker(pty=True) masks in place whatever the replacement setting."""
    cfg = load_masking_config({"replacement": "label"}, tmp_path)
    tok = _token()
    assert _mask(cfg, b"t " + tok + b"\n", pty=True) == b"t " + b"*" * len(tok) + b"\n"


def test_mask_input_and_timing_keys_are_parsed(tmp_path: Path) -> None:
    """mask_input, hold_timeout_ms, max_hold_bytes and engine reach the config and maskers."""
    cfg = load_masking_config({"mask_input": False, "hold_timeout_ms": 20,
                               "max_hold_bytes": 4096, "engine": "python"}, tmp_path)
    assert cfg.mask_input is False
    m = cfg.new_masker(pty=False)
    assert (m.hold_timeout, m.engine) == (0.02, "python")


def test_disabled_masking_passes_secrets(tmp_path: Path) -> None:
    """enabled = false turns masking off (documented as discouraged)."""
    cfg = load_masking_config({"enabled": False}, tmp_path)
    tok = _token()
    assert _mask(cfg, b"t " + tok + b"\n") == b"t " + tok + b"\n"


def test_custom_rule_with_secret_group_and_keywords(tmp_path: Path) -> None:
    """A [[masking.rules]] entry masks only its secret group and is counted under its id."""
    cfg = load_masking_config({"rules": [{
        "id": "acme-key", "regex": r"acme_key\((?P<val>[a-z0-9]{12})\)",
        "keywords": ["acme_key("], "secret_group": "val"}]}, tmp_path)
    m = cfg.new_masker(pty=False)
    out = m.feed(b"call acme_key(abcdef123456) done\n")
    assert out == b"call acme_key([MASKED:acme-key]) done\n"
    assert m.counts == {"acme-key": 1}


def test_custom_rule_prefix_masks_whole_match(tmp_path: Path) -> None:
    """A custom rule with a prefix and no group masks the whole match."""
    cfg = load_masking_config({"rules": [{"id": "corp-token", "regex": r"CORP-[A-Z0-9]{16}",
                                          "prefix": "CORP-"}]}, tmp_path)
    assert _mask(cfg, b"x CORP-ABCDEFGH12345678 y\n") == b"x [MASKED:corp-token] y\n"


def test_disable_rules_turns_off_a_default_rule(tmp_path: Path) -> None:
    """disable_rules removes named default rules."""
    cfg = load_masking_config({"disable_rules": ["github-token"]}, tmp_path)
    tok = _token()
    assert _mask(cfg, b"t " + tok + b"\n") == b"t " + tok + b"\n"


def test_known_values_file_masks_values(tmp_path: Path) -> None:
    """Values listed in known_values_file (relative to base_dir) are always masked."""
    value = Gen(22).s(B62, 20)
    (tmp_path / "known.txt").write_text(f"# comment\n\n{value}\n")
    os.chmod(tmp_path / "known.txt", 0o600)
    cfg = load_masking_config({"known_values_file": "known.txt"}, tmp_path)
    out = _mask(cfg, f"the value is {value}!\n".encode())
    assert out == b"the value is [MASKED:known-value]!\n"


@pytest.mark.parametrize(
    ("section", "where", "reason"),
    [
        ({"bogus": 1}, "masking", "unknown key"),
        ({"enabled": "yes"}, "masking.enabled", "true or false"),
        ({"replacement": "stars"}, "masking.replacement", "label"),
        ({"engine": "re2"}, "masking.engine", "hyperscan"),
        ({"hold_timeout_ms": 0}, "masking.hold_timeout_ms", "between"),
        ({"max_hold_bytes": 10}, "masking.max_hold_bytes", "between"),
        ({"disable_rules": ["nope"]}, "masking.disable_rules", "unknown rule id"),
        ({"rules": {"id": "x"}}, "masking.rules", "array of tables"),
        ({"rules": [{"id": "Bad Id", "regex": "x"}]}, "masking.rules[0].id", "lower-case"),
        ({"rules": [{"id": "github-token", "regex": "x"}]}, "masking.rules[0].id", "duplicate"),
        ({"rules": [{"id": "a-b", "regex": "("}]}, "masking.rules[0].regex", "invalid"),
        ({"rules": [{"id": "a-b", "regex": "x*"}]}, "masking.rules[0].regex", "empty string"),
        ({"rules": [{"id": "a-b", "regex": "x", "secret_group": "v"}]},
         "masking.rules[0].secret_group", "no group"),
        ({"rules": [{"id": "a-b", "regex": "x", "colour": 1}]}, "masking.rules[0]", "unknown"),
        ({"known_values_file": "missing.txt"}, "masking.known_values_file", "cannot read"),
    ],
)
def test_bad_sections_raise_config_error(tmp_path: Path, section: dict[str, object], where: str,
                                         reason: str) -> None:
    """Each invalid setting raises ConfigError naming the key and the reason."""
    with pytest.raises(ConfigError) as err:
        load_masking_config(section, tmp_path)
    assert err.value.where.startswith(where)
    assert reason in err.value.reason


def test_world_readable_known_values_file_is_refused(tmp_path: Path) -> None:
    """A known_values_file readable by others is a config error."""
    f = tmp_path / "known.txt"
    f.write_text(Gen(23).s(B62, 20) + "\n")
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="world-readable"):
        load_masking_config({"known_values_file": str(f)}, tmp_path)


def test_short_known_value_is_refused(tmp_path: Path) -> None:
    """Known values under 8 characters are refused (they would mask ordinary text)."""
    f = tmp_path / "known.txt"
    f.write_text("abc\n")
    os.chmod(f, 0o600)
    with pytest.raises(ConfigError, match="line 1"):
        load_masking_config({"known_values_file": str(f)}, tmp_path)
