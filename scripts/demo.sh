#!/usr/bin/env bash
# Sets up everything, then runs a local bastion in front of a local demo target (Ctrl-C stops).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh run
exec .venv/bin/bastion demo "$@"
