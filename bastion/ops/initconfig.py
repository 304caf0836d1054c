"""``bastion init-config DIR``: write the shipped example config and policy into a folder.

From a wheel there is no ``config/`` checkout to copy from, so the files come from the package
(:mod:`bastion.shipped`). The written ``bastion.toml`` points its writable paths (state folder,
host key, recordings) at ``--state-dir`` as absolute paths: the config folder (``/etc/bastion``)
is read-only for the service, and relative paths would resolve under it. Existing files are
never overwritten.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from bastion import shipped
from bastion.errors import BastionError

DEFAULT_STATE_DIR = "/var/lib/bastion"

# (section, key) -> path below the state folder; the example config's relative defaults.
_STATE_PATHS = {
    ("server", "state_dir"): "",
    ("server", "host_key"): "ssh_host_ed25519_key",
    ("recording", "dir"): "recordings",
}


def register(subparsers: Any) -> None:
    _register_init(subparsers)
    register_shipped(subparsers)


def _register_init(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "init-config",
        help="write the example bastion.toml and the shipped policy into a folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dir", type=Path, help="folder to write into (created if missing)")
    p.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help="the service's writable folder; state_dir, host_key and recordings go there",
    )
    p.set_defaults(func=_init_config)


def example_config(state_dir: Path) -> str:
    """The shipped example config with its writable paths made absolute under ``state_dir``."""
    text = shipped.example_config_path().read_text(encoding="utf-8")
    out: list[str] = []
    section = ""
    for line in text.splitlines(keepends=True):
        if m := re.match(r"\s*\[+\s*([A-Za-z_.]+)\s*\]+", line):
            section = m.group(1)
        key = re.match(r"(\s*)([A-Za-z_]+)(\s*=\s*)\"[^\"]*\"(.*)$", line, re.DOTALL)
        if key and (section, key.group(2)) in _STATE_PATHS:
            below = _STATE_PATHS[(section, key.group(2))]
            value = str(state_dir / below) if below else str(state_dir)
            line = f'{key.group(1)}{key.group(2)}{key.group(3)}"{value}"{key.group(4)}'
        out.append(line)
    result = "".join(out)
    parsed = tomllib.loads(result)  # the shipped example changed shape: fail, do not guess
    for (sec, name), below in _STATE_PATHS.items():
        want = str(state_dir / below) if below else str(state_dir)
        if parsed.get(sec, {}).get(name) != want:
            raise BastionError(f"init-config: could not set {sec}.{name} in the example config")
    return result


def _init_config(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    state_dir = Path(args.state_dir)
    if not state_dir.is_absolute():
        raise BastionError(f"--state-dir: expected an absolute path, got {args.state_dir!r}")
    source = shipped.shipped_dir()
    writes: dict[Path, bytes] = {
        folder / "bastion.toml": example_config(state_dir).encode(),
        folder / "policy.toml": shipped.policy_path().read_bytes(),
    }
    tools = source / "tools"
    if tools.is_dir():  # tool definitions the policy loads relative to its own file
        for file in sorted(tools.rglob("*.toml")):
            writes[folder / "tools" / file.relative_to(tools)] = file.read_bytes()
    for path in writes:
        if path.exists():
            raise BastionError(f"{path} already exists; init-config never overwrites a file")
    try:
        for path, data in writes.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as fh:
                fh.write(data)
            path.chmod(0o640)
    except OSError as exc:
        raise BastionError(f"cannot write {exc.filename}: {exc.strerror}") from None
    for path in writes:
        print(f"wrote {path}")
    print(f"next: edit {folder / 'bastion.toml'} (targets, access, [http]), then check-config")
    return 0



def register_shipped(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "shipped",
        help="print a file shipped in the package (the policy, the example config, the systemd"
        " units); without NAME, list them",
    )
    p.add_argument("name", nargs="?", help="e.g. bastion.service, bastion.tmpfiles, policy.toml")
    p.set_defaults(func=_shipped)


def _shipped(args: argparse.Namespace) -> int:
    files = shipped.files()
    if args.name is None:
        for name, path in files.items():
            print(f"{name}\t{path}")
        return 0
    if args.name not in files:
        raise BastionError(f"shipped: no file {args.name!r} (one of: {', '.join(files)})")
    sys.stdout.write(files[args.name].read_text(encoding="utf-8"))
    return 0
