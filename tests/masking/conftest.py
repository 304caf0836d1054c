"""Masking tests: make the corpus helper importable and run engine-sensitive tests twice."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bastion.masking.engine import hyperscan_available

ENGINES = ["python", *(["hyperscan"] if hyperscan_available() else [])]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each matching engine in turn (hyperscan only where the wheel is installed)."""
    return str(request.param)
