#!/usr/bin/env bash
# crest's test command: every unit and integration test of the workspace.
# Connector tests start the platform sandbox themselves on free loopback ports;
# loader tests need the BigQuery and Snowflake emulators, which this script
# installs (local virtualenvs, scripts/emulators.sh), starts and stops; the
# demo's page is checked in headless Chromium, installed here if missing; the
# Airflow DAGs run in real Airflow 3 (orchestration/airflow/test.sh).
# Ends with one summary line over every test binary: "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
log=$(mktemp)
emulators=$(mktemp -d)
trap 'bash scripts/emulators.sh stop "$emulators"; rm -rf "$log" "$emulators"' EXIT
# The demo's tier board is checked in headless Chromium (Debian's package).
if [ ! -x "${CREST_TEST_CHROMIUM:-/usr/bin/chromium}" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
bash scripts/emulators.sh start "$emulators"
# shellcheck disable=SC1091
source "$emulators/env"
status=0
# Every binary first: tests run crest's sibling binaries (crest-ga4, the
# connectors), which `cargo test` builds only for their own package's tests,
# so without this a fresh cache would miss them and a warm one test stale ones.
cargo build --workspace --bins --locked -q
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# The Airflow DAGs in real Airflow 3 (a venv it installs once), driving the
# debug binaries built above against the sandbox.
bash orchestration/airflow/test.sh 2>&1 | tee -a "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     / passed| failed/ && !/^test / && !/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
