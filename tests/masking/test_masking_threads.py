"""Maskers may run on several threads at once (bastions in tests, reload builds, tools) without
sharing Hyperscan scratch space: output is what one thread alone produces."""

from __future__ import annotations

import base64
import random
import threading

import pytest

from bastion.masking import StreamMasker
from bastion.masking.engine import hyperscan_available


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed")
def test_concurrent_maskers_match_single_threaded_output() -> None:
    """Four threads masking at once each get exactly the single-threaded result."""
    rng = random.Random(7)
    lines = []
    for i in range(400):
        key = base64.b64encode(rng.randbytes(64)).decode()
        lines.append(f"line {i} AccountKey={key};EndpointSuffix=core.windows.net password=x{i}\n")
    data = "".join(lines).encode()
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]

    def run() -> bytes:
        masker = StreamMasker(engine="hyperscan")
        return b"".join(masker.feed(c) for c in chunks) + masker.flush()

    expected = run()
    results: list[bytes] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                results.append(run())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 20
    assert all(r == expected for r in results)
    assert (
        b"AccountKey=" in expected
        and lines[0].split("AccountKey=")[1][:20].encode() not in expected
    )
