"""``bastion check-config``: validate a config and everything it refers to, one line per check.

The same parsers the bastion uses at start run here (a config that passes starts), plus what
only matters in production: private keys parse and are not readable by others, files that
decide what runs (config, policy) are not writable by others, the state folder belongs to the
service user and is closed to others. Anything that cannot be checked is a failure.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from bastion.config import Config, load_config
from bastion.errors import BastionError
from bastion.schema import SECTIONS, problems

# Top-level sections the bastion reads (bastion/schema.py, shared with `serve`); anything else
# is a typo that would silently do nothing.
KNOWN_SECTIONS = frozenset(SECTIONS)


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def ok(self, what: str) -> None:
        self.findings.append(Finding(True, what))

    def fail(self, what: str) -> None:
        self.findings.append(Finding(False, what))

    @contextmanager
    def check(self, label: str) -> Iterator[None]:
        """Turn a BastionError/OSError inside the block into one FAIL line naming ``label``."""
        try:
            yield
        except BastionError as exc:
            self.fail(f"{label}: {exc}")
        except OSError as exc:
            self.fail(f"{label}: {exc.filename or ''} {exc.strerror or exc}".strip())


def check_config(path: Path, *, owner: int | None = None) -> Report:
    """Run every check; ``owner`` is the uid the state folder must belong to (default: euid)."""
    report = Report()
    if shape := _shape_problems(path):  # every unknown section and key, one line each
        for where, reason in shape:
            report.fail(f"config: {path}: {where}: {reason}")
        return report
    try:
        config = load_config(path)
    except BastionError as exc:
        report.fail(f"config: {exc}")
        return report  # nothing else can be checked without it
    report.ok(f"config {config.path} parses")
    uid = os.geteuid() if owner is None else owner
    for step in _STEPS:
        step(config, report, uid)
    return report


def _shape_problems(path: Path) -> list[tuple[str, str]]:
    """Schema problems of the file, all of them (load_config stops at the first)."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # load_config reports it, with the reason
    return list(problems(raw))


# -- the checks, in the order they print ----------------------------------------------------------
def _sections(config: Config, report: Report, uid: int) -> None:
    unknown = sorted(set(config.raw) - KNOWN_SECTIONS)
    for name in unknown:
        report.fail(f"config: unknown section [{name}] (typo?)")
    if not unknown:
        report.ok("config: every section is known")
    _not_writable_by_others(report, "config file", config.path)


def _server(config: Config, report: Report, uid: int) -> None:
    host_key = config.server.host_key
    if host_key.exists():
        if _private_file(report, "server.host_key", host_key):
            with report.check("server.host_key"):
                key = _read_ssh_private_key(host_key)
                report.ok(f"server.host_key {host_key}: {key.get_algorithm()}, private")
    elif _dir_writable(host_key.parent):
        report.ok(f"server.host_key {host_key}: missing, will be created on first start")
    else:
        report.fail(f"server.host_key {host_key}: missing and its folder is not writable")
    _state_dir(report, config.state_dir, uid)


def _auth(config: Config, report: Report, uid: int) -> None:
    for file, key in zip(
        config.auth.trusted_user_ca_files, config.auth.trusted_user_ca_keys, strict=True
    ):
        report.ok(f"auth: trusted user CA {file}: {key.get_algorithm()}")
        _not_writable_by_others(report, "auth: trusted user CA", file)
    if not config.access:
        report.fail("access: no [[access]] rules: no agent can reach any target")
    else:
        report.ok(f"access: {len(config.access)} rule(s)")
    _access_targets(config, report)


def _access_targets(config: Config, report: Report) -> None:
    """A rule's target pattern that names no configured target is a typo or a stale rule."""
    import fnmatch

    for i, rule in enumerate(config.access):
        for pattern in rule.targets:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in config.targets):
                report.fail(f"access[{i}].targets: {pattern!r} matches no [[targets]] name")


def _targets(config: Config, report: Report, uid: int) -> None:
    if not config.targets:
        report.fail("targets: no [[targets]] configured")
    for name, target in config.targets.items():
        where = f"target {name}"
        if target.host_keys:
            report.ok(f"{where}: host key pinned ({len(target.host_keys)} key(s))")
        elif target.known_hosts is not None:
            _known_hosts_pins(report, where, target.known_hosts, target.host, target.port)
        else:
            report.fail(f"{where}: host key not pinned")
        if _private_file(report, f"{where}: identity_file", target.identity_file):
            with report.check(f"{where}: identity_file"):
                key = _read_ssh_private_key(target.identity_file)
                report.ok(f"{where}: identity_file {target.identity_file}: {key.get_algorithm()}")


def _policy(config: Config, report: Report, uid: int) -> None:
    from bastion.gate import gate_settings
    from bastion.policy import load_policy

    with report.check("policy"):
        settings = gate_settings(config)
        policy = load_policy(settings.policy_file)  # runs every rule's examples
        report.ok(
            f"policy {settings.policy_file}: {len(policy.rules)} rules, examples pass;"
            f" shells {settings.shells}"
        )
        _not_writable_by_others(report, "policy file", settings.policy_file)


def _masking(config: Config, report: Report, uid: int) -> None:
    from bastion.masking import load_masking_config

    with report.check("masking"):
        section = config.raw.get("masking", {})
        masking = load_masking_config(section, config.base_dir)
        state = "enabled" if masking.enabled else "DISABLED"
        report.ok(
            f"masking: {state}, {len(masking.rules)} rules,"
            f" {len(masking.known_values)} known values"
        )
        known = section.get("known_values_file") if isinstance(section, dict) else None
        if isinstance(known, str):
            _private_file(report, "masking.known_values_file", config.resolve(known))


def _recording(config: Config, report: Report, uid: int) -> None:
    from bastion.recording import parse_recording_config

    with report.check("recording"):
        rec = parse_recording_config(
            config.raw.get("recording", {}), config.base_dir, config.state_dir
        )
        report.ok(f"recording: dir {rec.dir}, fsync every {rec.fsync_interval:g}s")
        if rec.dir.exists():
            _owned_closed_dir(report, "recording.dir", rec.dir, uid)
        if rec.key_file.exists():
            if _private_file(report, "recording.key_file", rec.key_file):
                _recording_key_parses(report, rec.key_file)
        else:
            report.ok(f"recording.key_file {rec.key_file}: missing, will be created on start")


def _identity(config: Config, report: Report, uid: int) -> None:
    if "oidc" not in config.raw and "ca" not in config.raw:
        return
    from bastion.identity.config import ca_key_path, parse_identity_config

    with report.check("identity"):
        ca = config.raw.get("ca", {})
        if "oidc" in config.raw:
            identity = parse_identity_config(ca, config.raw["oidc"], config.base_dir)
            report.ok(
                f"oidc: {len(identity.issuers)} issuer(s), {len(identity.grants)} grant(s),"
                f" certificates valid {identity.cert_validity:g}s"
            )
        key = ca_key_path(ca, config.base_dir)
        if _private_file(report, "ca.key", key):
            ssh_key = _read_ssh_private_key(key)
            report.ok(f"ca.key {key}: {ssh_key.get_algorithm()}, private")


def _http(config: Config, report: Report, uid: int) -> None:
    from bastion.http import http_settings, http_wanted

    if not http_wanted(config):
        report.ok("http: not configured (no health, metrics, approvals or certificate endpoint)")
        return
    with report.check("http"):
        settings = http_settings(config)
        scheme = "https" if settings.tls_cert else "http"
        report.ok(f"http: {scheme} on {settings.host}:{settings.port}, links {settings.public_url}")
        if settings.tls_key is not None and _private_file(report, "http.tls_key", settings.tls_key):
            settings.ssl_context()  # loads and matches the certificate and key
            report.ok("http: TLS certificate and key load and match")
        if "approvals" in config.raw:
            from bastion.approval.config import parse_approvals_config

            approvals = parse_approvals_config(config.raw, config.base_dir)
            report.ok(f"approvals: mode {approvals.mode}, timeout {approvals.timeout:g}s")
            _rule_modes(config, report, approvals.mode)


def _rule_modes(config: Config, report: Report, mode: str) -> None:
    """Rules that set their own approval mode override [approvals] mode: say so."""
    from bastion.gate import gate_settings
    from bastion.policy import load_policy

    try:
        policy = load_policy(gate_settings(config).policy_file, check_examples=False)
    except BastionError:
        return  # the policy step reports it
    own = sorted(r.id for r in policy.rules if r.mode not in (None, mode))
    if own:
        report.ok(f"approvals: rule(s) {', '.join(own)} keep their own mode (not {mode})")


def _interactive(config: Config, report: Report, uid: int) -> None:
    if "interactive" not in config.raw:
        return
    from bastion.interactive.config import parse_interactive_config

    with report.check("interactive"):
        shells = parse_interactive_config(config.raw["interactive"], config.base_dir)
        report.ok(f"interactive: fallback {shells.fallback}")


def _notify(config: Config, report: Report, uid: int) -> None:
    if "notify" not in config.raw:
        return
    from bastion.notify.config import parse_notify_config

    with report.check("notify"):
        specs = parse_notify_config(config.raw, config.base_dir)  # reads the secret files
        names = ", ".join(f"{s.name} ({s.type})" for s in specs) or "none"
        report.ok(f"notify: {names}")


def _audit(config: Config, report: Report, uid: int) -> None:
    if "audit" not in config.raw:
        return
    from bastion.audit.cli import audit_db_path

    with report.check("audit"):
        report.ok(f"audit: database {audit_db_path(config)}")


def _limits(config: Config, report: Report, uid: int) -> None:
    from bastion.ops.limits import parse_limits

    with report.check("limits"):
        lim = parse_limits(config.raw.get("limits", {}))
        report.ok(
            f"limits: {lim.max_connections} connections, {lim.max_sessions_per_identity} per"
            f" identity, {lim.auth_failures_per_minute} auth failures/min per source and identity"
            f" ({lim.auth_failures_per_address_per_minute} per source),"
            f" {lim.max_channels_per_connection} channels per connection,"
            f" {lim.max_pending_approvals_per_identity} pending approvals per identity"
        )


_STEPS: tuple[Callable[[Config, Report, int], None], ...] = (
    _sections, _server, _auth, _targets, _policy, _masking, _recording, _identity, _http,
    _interactive, _notify, _audit, _limits,
)  # fmt: skip


# -- file helpers ----------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_file(report: Report, label: str, path: Path) -> bool:
    """A secret: must be a regular file, not a symlink target others can swap, mode 0600/0400."""
    try:
        st = path.stat()
    except FileNotFoundError:
        report.fail(f"{label} {path}: file not found")
        return False
    except OSError as exc:
        report.fail(f"{label} {path}: {exc.strerror}")
        return False
    if not stat.S_ISREG(st.st_mode):
        report.fail(f"{label} {path}: not a regular file")
        return False
    if st.st_mode & 0o077:
        report.fail(
            f"{label} {path}: mode {stat.S_IMODE(st.st_mode):04o} lets group or others read it;"
            " chmod 600 it"
        )
        return False
    return True


def _not_writable_by_others(report: Report, label: str, path: Path) -> None:
    """Files that decide what the bastion allows must not be writable by group or others."""
    try:
        mode = _mode(path)
    except OSError as exc:
        report.fail(f"{label} {path}: {exc.strerror}")
        return
    if mode & 0o022:
        report.fail(f"{label} {path}: mode {mode:04o} is writable by group or others; chmod go-w")


def _state_dir(report: Report, path: Path, uid: int) -> None:
    if not path.exists():
        if _dir_writable(_existing_parent(path)):
            report.ok(f"server.state_dir {path}: missing, will be created on first start")
        else:
            report.fail(f"server.state_dir {path}: missing and cannot be created")
        return
    _owned_closed_dir(report, "server.state_dir", path, uid)


def _owned_closed_dir(report: Report, label: str, path: Path, uid: int) -> None:
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        report.fail(f"{label} {path}: not a folder")
    elif st.st_uid != uid:
        report.fail(
            f"{label} {path}: owned by {_user(st.st_uid)}, not {_user(uid)}"
            " (run check-config as the service user, or pass --owner)"
        )
    elif mode & 0o027:
        report.fail(f"{label} {path}: mode {mode:04o} lets others in; chmod 700 it")
    elif not _dir_writable(path):
        report.fail(f"{label} {path}: not writable")
    else:
        report.ok(f"{label} {path}: owned by {_user(uid)}, mode {mode:04o}")


def _known_hosts_pins(report: Report, where: str, path: Path, host: str, port: int) -> None:
    try:
        known = asyncssh.read_known_hosts(str(path))
        keys = known.match(host, "", port)[0]
    except (OSError, ValueError, asyncssh.Error) as exc:
        report.fail(f"{where}: known_hosts {path}: {exc}")
        return
    if keys:
        report.ok(f"{where}: host key pinned in {path} ({len(keys)} key(s))")
    else:
        shown = host if port == 22 else f"[{host}]:{port}"
        report.fail(f"{where}: known_hosts {path} has no key for {shown}")
    _not_writable_by_others(report, f"{where}: known_hosts", path)


def _recording_key_parses(report: Report, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        report.fail(f"recording.key_file {path}: not a valid key ({exc})")
        return
    if isinstance(key, Ed25519PrivateKey):
        report.ok(f"recording.key_file {path}: Ed25519, private")
    else:
        report.fail(f"recording.key_file {path}: not an Ed25519 key")


def _read_ssh_private_key(path: Path) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(str(path))
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise BastionError(f"{path}: not a usable private key ({exc})") from None


def _dir_writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _existing_parent(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path("/")


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
