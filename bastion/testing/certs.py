"""Keys and OpenSSH certificates made with the real ssh-keygen."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass
from pathlib import Path

_serials = itertools.count(1000)


def keygen(path: Path, kind: str = "ed25519", bits: int | None = None) -> Path:
    cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path)]
    if bits:
        cmd += ["-b", str(bits)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


@dataclass
class CertificateAuthority:
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str = "user_ca") -> CertificateAuthority:
        return cls(keygen(directory / name))

    @property
    def public_key(self) -> Path:
        return self.key.with_name(self.key.name + ".pub")

    def sign(
        self,
        public_key: Path,
        *,
        principals: str = "agents",
        key_id: str = "agent@test",
        validity: str = "-5m:+10m",
        host: bool = False,
        options: tuple[str, ...] = (),
        serial: int | None = None,
    ) -> Path:
        """Sign ``public_key`` (KEY.pub) and return the KEY-cert.pub path ssh-keygen wrote."""
        cmd = ["ssh-keygen", "-q", "-s", str(self.key), "-I", key_id, "-V", validity]
        cmd += ["-z", str(serial if serial is not None else next(_serials))]
        if principals:
            cmd += ["-n", principals]
        if host:
            cmd.append("-h")
        for opt in options:
            cmd += ["-O", opt]
        cmd.append(str(public_key))
        subprocess.run(cmd, check=True, capture_output=True)
        return public_key.with_name(public_key.name.removesuffix(".pub") + "-cert.pub")


@dataclass
class Agent:
    """An agent's key pair and certificate, as files the real ssh client uses."""

    key: Path
    cert: Path | None

    @classmethod
    def create(
        cls, directory: Path, ca: CertificateAuthority | None, name: str = "agent", **sign: object
    ) -> Agent:
        directory.mkdir(parents=True, exist_ok=True)
        key = keygen(directory / name)
        cert = ca.sign(key.with_name(name + ".pub"), **sign) if ca else None  # type: ignore[arg-type]
        return cls(key, cert)
