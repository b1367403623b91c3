#!/usr/bin/env bash
# Extraction benchmark: the sandbox and crest-tiktok on this machine, report
# rows → raw Parquet, end to end over loopback HTTP. Prints rows/s and the
# connector's peak memory for each size, so a regression shows.
#
#   scripts/bench-extract.sh               # 100k, 1M and 5M rows
#   scripts/bench-extract.sh 1000000       # one size
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --locked -q -p crest-sandbox -p crest-tiktok
bin="$CARGO_TARGET_DIR/release"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000 5000000)

# 2,500 creators with 1-3 ads each: about 5,000 ads, ~4,600 serving on an average day.
creators=2500
printf '%-10s %-10s %-10s %-12s %-10s %-10s\n' rows days seconds rows/s peak_MB api_calls
for target in "${sizes[@]}"; do
  days=$(( (target + 4599) / 4600 ))
  work=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bin/crest-sandbox" serve --port "$port" --first-day 2023-01-01 --days "$days" --creators $creators \
      --advertisers 1 >"$work/sandbox.log" 2>&1 &
  sandbox=$!
  for _ in $(seq 100); do grep -q listening "$work/sandbox.log" && break; sleep 0.1; done
  advertiser=$(awk '/^tiktok advertiser/ {print $3}' "$work/sandbox.log")
  end=$(date -d "2023-01-01 + $((days - 1)) days" +%F)
  TIKTOK_ACCESS_TOKEN=sandbox-token CREST_TIKTOK_BASE_URL="http://127.0.0.1:$port" \
    /usr/bin/time -f '%M' -o "$work/rss" "$bin/crest-tiktok" --log-format json extract \
      --advertiser-id "$advertiser" --start 2023-01-01 --end "$end" --out "$work/out" \
      --max-qps 0 --concurrency 4 >"$work/stdout" 2>"$work/log"
  kill $sandbox; wait $sandbox 2>/dev/null || true
  manifest=$(ls "$work"/out/_runs/*.json)
  python3 - "$manifest" "$work/rss" "$days" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
rss_mb = int(open(sys.argv[2]).read().split()[-1]) / 1024
secs = m["elapsed_ms"] / 1000
print(f'{m["rows"]:<10} {sys.argv[3]:<10} {secs:<10.2f} {m["rows"]/secs:<12,.0f} {rss_mb:<10.0f} {m["api"]["api_calls"]:<10}')
PY
  rm -rf "$work"
done
