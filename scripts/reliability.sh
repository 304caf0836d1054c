#!/usr/bin/env bash
# Reliability in one command: the 200-agent load against `bastion serve`, then every fault test,
# then one summary (sessions, commands, errors, lost audit rows, each fault's result).
# Everything listens on 127.0.0.1 and is stopped by PID; the load is bounded in count and time.
# Options go to the load script, e.g. --agents 50 --rounds 1. Results: $OUT (default a temp dir).
set -uo pipefail
cd "$(dirname "$0")/.."
# The fault tests need the test system packages too (libfaketime for the clock jumps).
BASTION_EXTRA_APT="${BASTION_EXTRA_APT:-} $(tr '\n' ' ' < scripts/test-apt-packages.txt)" \
  bash scripts/setup.sh test >/dev/null || { echo "setup failed" >&2; exit 1; }
OUT=${OUT:-$(mktemp -d /tmp/bastion-reliability-results-XXXXXX)}
mkdir -p "$OUT"
rm -f "$OUT/faults.jsonl"
echo "== load (results in $OUT)"
.venv/bin/python -m bench.reliability.load --json "$OUT/load.json" "$@"
echo "== faults"
BASTION_RELIABILITY_REPORT="$OUT/faults.jsonl" .venv/bin/python -m pytest -q -p no:cacheprovider \
  --junitxml "$OUT/faults.xml" \
  tests/security/test_faults.py \
  tests/security/test_faults_network.py \
  tests/ssh/test_ssh_recording_faults.py \
  tests/approval/test_approval_e2e.py::test_pending_request_is_abandoned_when_the_agent_leaves \
  tests/approval/test_approval_e2e_browser.py::test_restart_while_pending_abandons_the_request \
  tests/notify/test_notify_e2e.py::test_cli_approval_is_not_delayed_by_a_hanging_webhook \
  tests/audit/test_db_snapshot.py
echo "== summary"
exec .venv/bin/python -m bench.reliability.report "$OUT"
