#!/usr/bin/env bash
# Meta extraction benchmark: the sandbox's Marketing API and crest-meta on this
# machine (async jobs, cursor paging, typed Parquet), both sharing the 2 cores.
# Prints rows/s, the connector's peak memory and API calls per 1,000 rows.
#
#   scripts/bench-meta.sh               # about 100k and 1M insight rows
#   scripts/bench-meta.sh 500000        # one size
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --locked -q -p crest-sandbox -p crest-meta
bin="$CARGO_TARGET_DIR/release"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
page_limit="${PAGE_LIMIT:-500}"
# The sandbox finishes a job after two status polls, so the poll delay is idle time
# here (against Meta it is set by how long jobs take): POLL_MS=50 to see its cost.
# 2,500 creators: about 3,750 partnership ads over two ad accounts, ~6,600 rows a day.
printf '%-10s %-6s %-9s %-10s %-9s %-10s %s\n' rows days seconds rows/s peak_MB api_calls calls/1k_rows
for target in "${sizes[@]}"; do
  days=$(( (target + 6599) / 6600 ))
  work=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bin/crest-sandbox" serve --port "$port" --first-day 2023-01-01 --days "$days" --creators 2500 \
      --meta-job-polls 2 >"$work/sandbox.log" 2>&1 &
  sandbox=$!
  for _ in $(seq 100); do grep -q listening "$work/sandbox.log" && break; sleep 0.1; done
  accounts=$(awk '/^meta ad account/ {print $4}' "$work/sandbox.log" | paste -sd, -)
  end=$(date -d "2023-01-01 + $((days - 1)) days" +%F)
  META_ACCESS_TOKEN=sandbox-meta-token CREST_META_BASE_URL="http://127.0.0.1:$port" \
    /usr/bin/time -f '%M' -o "$work/rss" "$bin/crest-meta" --log-format json extract \
      --account-id "$accounts" --start 2023-01-01 --end "$end" --out "$work/out" \
      --max-qps 0 --poll-initial-ms "${POLL_MS:-10}" --page-limit "$page_limit" >"$work/stdout" 2>"$work/log"
  kill $sandbox; wait $sandbox 2>/dev/null || true
  python3 - "$(ls "$work"/out/_runs/*.json)" "$work/rss" "$days" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
rss_mb = int(open(sys.argv[2]).read().split()[-1]) / 1024
secs = m["elapsed_ms"] / 1000
calls = m["api"]["api_calls"]
print(f'{m["rows"]:<10} {sys.argv[3]:<6} {secs:<9.2f} {m["rows"]/secs:<10,.0f} {rss_mb:<9.0f} {calls:<10} {calls*1000/m["rows"]:.2f}')
PY
  rm -rf "$work"
done
