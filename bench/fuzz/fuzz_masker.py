"""atheris harness for the stream masker: arbitrary bytes, split at fuzzer-chosen points.

Run for N seconds:  .venv/bin/python bench/fuzz/fuzz_masker.py -max_total_time=N
Checks: no exception, output equal to a single feed, held raw bytes under 4 x max_hold + 4 KiB.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from bastion.masking import StreamMasker
    from bastion.masking.ansi import MAX_SEQUENCE

MAX_HOLD = 1024
CAP = 4 * MAX_HOLD + MAX_SEQUENCE


def one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = sorted(fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 16), 0, 4096))
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    whole = StreamMasker(max_hold=MAX_HOLD)
    expected = whole.feed(body) + whole.flush()
    masker = StreamMasker(max_hold=MAX_HOLD)
    out, prev = b"", 0
    for cut in [*cuts, len(body)]:
        cut = min(max(cut, prev), len(body))
        out += masker.feed(body[prev:cut])
        prev = cut
        if len(masker._raw) > CAP:
            raise RuntimeError(f"held {len(masker._raw)} bytes")
    out += masker.flush()
    if out != expected:
        raise RuntimeError("output depends on chunking")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
