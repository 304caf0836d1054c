"""atheris harness for the command gate: decide() and is_incomplete() on arbitrary lines.

Run for N seconds:  .venv/bin/python bench/fuzz/fuzz_policy.py -max_total_time=N
A crash (segfault, exception, engine-error verdict) stops the run and writes crash-<hash>.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from bastion.policy import Context, Policy, is_incomplete, load_policy

POLICY = load_policy(Policy.default_path())
CTX = Context(principals=("agents",), target="web-01", login="azureuser")


def one(data: bytes) -> None:
    line = data.decode("utf-8", "surrogateescape")
    decision = POLICY.decide(line, CTX)
    if "engine-error" in decision.rules:
        raise RuntimeError(f"engine error on {line[:200]!r}")
    if POLICY.decide(line, CTX) != decision:
        raise RuntimeError("decide is not deterministic")
    is_incomplete(line)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
