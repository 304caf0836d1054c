"""Smoke test of the benchmark harness: a tiny run end to end, and the shape of its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("direct", "jump", "bastion")
CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com")


def _positive(numbers: dict[str, float], keys: tuple[str, ...]) -> None:
    for key in keys:
        assert numbers[key] > 0, (key, numbers)


def test_bench_tiny_run_reports_every_figure(tmp_path: Path) -> None:
    """`bench/run.py --quick --tiny` measures all three paths and writes every figure and goal."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--tiny", "--out",
         str(tmp_path)],
        capture_output=True, timeout=170, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    fig = result["figures"]
    for cipher in CIPHERS:
        for path in PATHS:
            _positive(fig["bulk"][cipher]["paths"][path],
                      ("mb_s", "mb_s_end_to_end", "cpu_s_per_gb"))  # fmt: skip
        assert set(fig["bulk"][cipher]["ratios"]) == {"bastion/direct", "bastion/jump",
                                                      "jump/direct"}  # fmt: skip
    for kind in ("zeros", "random"):  # binary bulk, side by side with the text bulk
        for path in PATHS:
            _positive(fig["bulk_binary"][kind]["paths"][path], ("mb_s", "cpu_s_per_gb"))
        # the recording of a binary transfer stays near the bytes moved (format 2)
        assert 0.9 < fig["bulk_binary"][kind]["paths"]["bastion"]["recording_per_byte"] < 1.3
    assert 0.5 < fig["bulk"][CIPHERS[0]]["paths"]["bastion"]["recording_per_byte"] < 1.5
    for path in PATHS:
        _positive(fig["streams"]["paths"][path], ("mb_s",))
        _positive(fig["setup"]["paths"][path], ("wall_ms", "cpu_ms"))
        _positive(fig["echo_exec"]["paths"][path], ("p50_us", "p99_us"))
        _positive(fig["echo_pty"]["paths"][path], ("p50_us", "p99_us"))
        _positive(fig["commands"]["paths"][path], ("per_s",))
    for n in ("5", "10"):
        _positive(fig["idle"]["bastion"][n], ("kib_per_session", "total_mib"))
    _positive(fig["idle"]["jump"]["5"], ("kib_per_session",))
    _positive(fig["gate"], ("decisions_per_s", "p50_us", "p99_us"))
    _positive(fig["masker"], ("plain_mb_s",))
    assert len(result["goals"]) == 13
    assert all(g["pass"] in (True, False, None) for g in result["goals"])
    assert result["settings"]["mode"] == "quick+tiny"
    assert len(result["loadavg"]["start"]) == 3
    md = (tmp_path / "results.md").read_text()
    assert "| echo round trip pty, p50 µs |" in md and "## Goals" in md
    assert "| bulk 2 MiB of random (binary) aes128-gcm, MB/s |" in md
    assert "recording bytes per byte moved" in md


def test_bench_refuses_bad_runs(tmp_path: Path) -> None:
    """A nonsensical --runs is a one-line usage error before anything is started."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--runs", "0", "--out", str(tmp_path)],
        capture_output=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert b"--runs must be between 1 and 50" in done.stderr
    assert not (tmp_path / "results.json").exists()
