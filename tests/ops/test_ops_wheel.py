"""A built wheel installed into a fresh venv works outside the checkout (issue 22, item 3).

The wheel is built from this worktree with ``pip wheel --no-deps`` and installed with
``--no-deps`` into a new venv; the bastion's dependencies come from the test venv through a
``.pth`` path line (no network, and no editable finder: a plain path line does not run the
other venv's ``.pth`` files). Every command runs from a folder outside the checkout.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.testing.sshd import free_port

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("agent_bastion-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("venv")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "zz_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    yield env_dir


def test_the_wheel_carries_the_shipped_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "bastion/_shipped/policy.toml" in names
    assert "bastion/_shipped/bastion.example.toml" in names
    shipped_tools = {p.relative_to(REPO / "config").as_posix() for p in
                     (REPO / "config").glob("tools/**/*.toml")}
    assert {f"bastion/_shipped/{t}" for t in shipped_tools} <= names
    for unit in ("bastion.service", "bastion-prune.service", "bastion-prune.timer",
                 "bastion.tmpfiles", "bastion.sysusers"):
        assert f"bastion/_systemd/{unit}" in names


def test_the_editable_install_reads_the_live_files() -> None:
    """In the checkout, the shipped files are config/ and systemd/ themselves (symlinks)."""
    from bastion import shipped
    from bastion.policy import DEFAULT_POLICY_PATH

    assert shipped.policy_path() == REPO / "config" / "policy.toml" == DEFAULT_POLICY_PATH
    assert shipped.example_config_path() == REPO / "config" / "bastion.example.toml"
    assert shipped.files()["bastion.service"] == REPO / "systemd" / "bastion.service"


def test_policy_commands_work_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    bastion = str(installed / "bin" / "bastion")
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import bastion.shipped as s; print(s.policy_path())"],
        capture_output=True, text=True, cwd=tmp_path, env=_env(), check=True,
    ).stdout.strip()
    assert where.startswith(str(installed)), where  # the wheel's copy, not the checkout's
    test = subprocess.run([bastion, "policy", "test"], capture_output=True, text=True,
                          cwd=tmp_path, env=_env(), timeout=120)
    assert test.returncode == 0, test.stdout + test.stderr
    assert re.search(r"(\d+)/\1 examples passed", test.stdout), test.stdout
    check = subprocess.run([bastion, "policy", "check", "--", "ls", "-la"],
                           capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "decision: allow" in check.stdout
    init = subprocess.run(
        [bastion, "init-config", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "var")],
        capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=60,
    )
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "etc" / "policy.toml").read_bytes() == Path(where).read_bytes()
    assert f'state_dir = "{tmp_path / "var"}"' in (tmp_path / "etc" / "bastion.toml").read_text()
    unit = subprocess.run([bastion, "shipped", "bastion.service"], capture_output=True,
                          text=True, cwd=tmp_path, env=_env(), timeout=60)
    assert unit.returncode == 0
    assert unit.stdout == (REPO / "systemd" / "bastion.service").read_text()


def test_demo_works_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """The wheel's demo finds the shipped policy and relays a command."""
    demo = subprocess.Popen(
        [str(installed / "bin" / "bastion"), "demo", "--dir", "d", "--port", str(free_port())],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=tmp_path, env=_env(),
    )
    try:
        assert demo.stderr is not None
        command = None
        deadline = time.monotonic() + 90
        while command is None and time.monotonic() < deadline:
            line = demo.stderr.readline().decode()
            if not line and demo.poll() is not None:
                break
            if line.strip().startswith("ssh -p"):
                command = line.strip()
        assert command is not None, f"demo exited {demo.poll()}"
        argv = [a.strip("'") for a in re.findall(r"'[^']*'|\S+", command)]
        result = subprocess.run(argv, capture_output=True, timeout=30, cwd=tmp_path)
        assert result.stdout == b"hi\n", result.stderr
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(30)
