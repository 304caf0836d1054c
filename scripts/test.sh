#!/usr/bin/env bash
# Sets up everything the tests need, then runs lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
BASTION_EXTRA_APT="${BASTION_EXTRA_APT:-} $(cat scripts/test-apt-packages.txt 2>/dev/null | tr '\n' ' ')" \
  bash scripts/setup.sh test
.venv/bin/ruff check bastion tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
