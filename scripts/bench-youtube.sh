#!/usr/bin/env bash
# YouTube extraction benchmark: the sandbox's Google APIs and crest-youtube on
# this machine, both sharing the 2 cores. Organic: YouTube Analytics
# reports.query pages (200 rows) and video metadata; paid: Google Ads
# searchStream (two GAQL queries per 7-day slice, batches of 10,000 rows).
# Prints rows/s, the connector's peak memory and API calls per 1,000 rows.
#
#   scripts/bench-youtube.sh                 # organic and ads, about 100k and 1M rows each
#   scripts/bench-youtube.sh ads 500000      # one API, one size
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --locked -q -p crest-sandbox -p crest-youtube
bin="$CARGO_TARGET_DIR/release"
apis=(organic ads)
sizes=(100000 1000000)
if [ $# -gt 0 ]; then apis=("$1"); shift; fi
if [ $# -gt 0 ]; then sizes=("$@"); fi
export GOOGLE_CLIENT_ID=sandbox-client GOOGLE_CLIENT_SECRET=sandbox-client-secret \
  GOOGLE_REFRESH_TOKEN=sandbox-refresh-token GOOGLE_ADS_DEVELOPER_TOKEN=sandbox-developer-token
printf '%-8s %-10s %-6s %-9s %-10s %-9s %-10s %s\n' api rows days seconds rows/s peak_MB api_calls calls/1k_rows
for api in "${apis[@]}"; do
  for target in "${sizes[@]}"; do
    work=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if [ "$api" = organic ]; then
      # A month for creators with a back catalogue: ~200 videos a channel, ~4,200
      # video-days a channel-month (one 30-day slice per channel).
      days=30
      creators=$(( (target + 4199) / 4200 ))
      world=(--creators "$creators" --videos-per-channel 400 --advertisers 1)
    else
      # 2,500 creators' ads in one customer: ~3,700 video-campaign ad rows a day.
      creators=2500
      days=$(( (target + 3699) / 3700 ))
      world=(--creators "$creators" --advertisers 1)
    fi
    "$bin/crest-sandbox" serve --port "$port" --first-day 2023-01-01 --days "$((days + 2))" "${world[@]}" \
        >"$work/sandbox.log" 2>&1 &
    sandbox=$!
    for _ in $(seq 300); do grep -q "google oauth" "$work/sandbox.log" && break; sleep 0.1; done
    end=$(date -d "2023-01-01 + $((days - 1)) days" +%F)
    base="http://127.0.0.1:$port"
    if [ "$api" = organic ]; then
      # Every creator's channel, from the seeded world's roster.
      targets=(--channel-id "$("$bin/crest-sandbox" roster --creators "$creators" | awk -F, 'NR>1 {print $5}' | paste -sd, -)")
    else
      targets=(--ads-customer-id "$(awk '/^google ads customer/ {print $4}' "$work/sandbox.log" | paste -sd, -)")
    fi
    CREST_GOOGLE_OAUTH_URL="$base/token" CREST_YOUTUBE_ANALYTICS_BASE_URL="$base" \
    CREST_YOUTUBE_DATA_BASE_URL="$base" CREST_GOOGLE_ADS_BASE_URL="$base" \
      /usr/bin/time -f '%M' -o "$work/rss" "$bin/crest-youtube" --log-format json extract "${targets[@]}" \
        --start 2023-01-01 --end "$end" --out "$work/out" --max-qps 0 >"$work/stdout" 2>"$work/log" \
      || { tail -3 "$work/log"; kill $sandbox; exit 1; }
    kill $sandbox; wait $sandbox 2>/dev/null || true
    python3 - "$(ls "$work"/out/_runs/*.json)" "$work/rss" "$days" "$api" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
rss_mb = int(open(sys.argv[2]).read().split()[-1]) / 1024
secs = m["elapsed_ms"] / 1000
calls = m["api"]["api_calls"]
print(f'{sys.argv[4]:<8} {m["rows"]:<10} {sys.argv[3]:<6} {secs:<9.2f} {m["rows"]/secs:<10,.0f} {rss_mb:<9.0f} {calls:<10} {calls*1000/m["rows"]:.2f}')
PY
    rm -rf "$work"
  done
done
