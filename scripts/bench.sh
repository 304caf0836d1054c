#!/usr/bin/env bash
# Sets up, then benchmarks direct OpenSSH vs ProxyJump vs the bastion side by side (loopback only).
# Options: --quick (about a minute), --full (the issue's full sizes), --runs N, --out DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python bench/run.py "$@"
