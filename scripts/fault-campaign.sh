#!/usr/bin/env bash
# The fault campaign at length: ROUNDS rounds (default 100) of the randomized
# campaign in tests/fault_campaign.rs — every connector, the
# transform and a lake load under injected faults, SIGKILLs, restatements,
# empty answers and runs started twice at once, each round checked against a
# clean pipeline. Prints "runs, faults injected, rows lost, rows duplicated".
#   scripts/fault-campaign.sh [ROUNDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
rounds="${1:-100}"
# Every connector's binary is run, so the workspace's binaries are built first.
cargo build --workspace --bins --locked --quiet
export CREST_CAMPAIGN_ROUNDS="$rounds"
if [ -n "${2:-}" ]; then export CREST_CAMPAIGN_SEED="$2"; fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
started=$(date +%s)
status=0
cargo test -p crest --locked --quiet --test fault_campaign -- --nocapture >"$log" 2>&1 || status=$?
grep -E "^(fault campaign|[0-9]+ rounds|round |.*panicked)" "$log" || tail -20 "$log"
echo "elapsed $(( $(date +%s) - started )) s"
exit "$status"
