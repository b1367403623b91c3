#!/usr/bin/env bash
# Warehouse load benchmark: extracts TikTok reports from the sandbox (about
# 4,500 rows a day), transforms them, then loads the run into BigQuery
# (bqemulator) and Snowflake (fakesnow) and prints what each load sent: API
# calls and request bytes, per 100k rows, with time and peak memory. The
# emulators' speed is not BigQuery's or Snowflake's; calls and bytes are what
# crest sends either way.
#
#   scripts/bench-warehouses.sh             # about 100k canonical rows
#   scripts/bench-warehouses.sh 500000      # another size
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --locked -q -p crest-sandbox -p crest-tiktok -p crest
bin="$CARGO_TARGET_DIR/release"
target="${1:-100000}"
days=$(( (target + 4499) / 4500 ))
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash scripts/emulators.sh stop "$work/emulators"
    [ -n "${KEEP:-}" ] && echo "work folder: $work" || rm -rf "$work"
}
trap cleanup EXIT
bash scripts/emulators.sh start "$work/emulators" >/dev/null
# shellcheck disable=SC1091
source "$work/emulators/env"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/crest-sandbox" serve --port "$port" --first-day 2025-01-01 --days "$days" --creators 2500 --advertisers 1 \
    >"$work/sandbox.log" 2>&1 &
pids+=($!)
"$bin/crest-sandbox" snowflake-proxy --upstream "$CREST_TEST_SNOWFLAKE_URL" >"$work/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/sandbox.log" && grep -q listening "$work/proxy.log" && break; sleep 0.1; done
advertiser=$(awk '/^tiktok advertiser/ {print $3}' "$work/sandbox.log")
proxy=$(awk '/listening on/ {print $NF}' "$work/proxy.log")
end=$(date -d "2025-01-01 + $((days - 1)) days" +%F)
echo "extracting $days days of TikTok reports, transforming ..."
TIKTOK_ACCESS_TOKEN=sandbox-token CREST_TIKTOK_BASE_URL="http://127.0.0.1:$port" "$bin/crest-tiktok" --log-format json \
    extract --advertiser-id "$advertiser" --start 2025-01-01 --end "$end" --out "$work/out" --max-qps 0 >/dev/null 2>&1
"$bin/crest-sandbox" roster --creators 2500 >"$work/roster.csv"
"$bin/crest" --log-format json transform --input "$work/out" --start 2025-01-01 --end "$end" \
    --roster "$work/roster.csv" 2>/dev/null | grep "rows out"

load() { # label, target, then env assignments
    local label=$1 target=$2; shift 2
    env "$@" /usr/bin/time -f '%e %M' -o "$work/t" "$bin/crest" --log-format json load --input "$work/out" \
        --target "$target" --create >"$work/stdout" 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
    read -r secs kb <"$work/t"
    python3 - "$label" "$secs" "$kb" "$work/stdout" "$work/stderr" <<'EOF'
import json, sys
label, secs, kb, out, err = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
t = next(json.loads(l) for l in open(err) if '"load traffic"' in l)
f = t.get("fields", t)
rows, calls, sent = int(f["rows"]), int(f["api_calls"]), int(f["bytes_sent"])
per = 100_000 / rows
print(f"{label:<10} {rows:>9,} rows  {calls:>5} API calls  {sent / 1e6:8.1f} MB sent  "
      f"per 100k rows: {calls * per:6.1f} calls, {sent * per / 1e6:6.1f} MB  {secs:7.1f} s  peak {kb // 1024} MB")
EOF
}
load BigQuery "bigquery://$CREST_TEST_BIGQUERY_PROJECT/bench" GOOGLE_OAUTH_ACCESS_TOKEN=bench \
    CREST_BIGQUERY_BASE_URL="$CREST_TEST_BIGQUERY_URL" CREST_BIGQUERY_STORAGE_URL="$CREST_TEST_BIGQUERY_STORAGE_URL"
load Snowflake "snowflake://bench/bench/crest" SNOWFLAKE_USER=bench SNOWFLAKE_PASSWORD=bench \
    CREST_SNOWFLAKE_BASE_URL="$proxy"
