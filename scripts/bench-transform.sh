#!/usr/bin/env bash
# Transform benchmark: extracts ~1M TikTok report rows from the sandbox, then
# times `crest transform` end to end (raw Parquet → canonical Parquet) and the
# raw → canonical step alone on in-memory Arrow batches (one core).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --locked -q -p crest-sandbox -p crest-tiktok -p crest
bin="$CARGO_TARGET_DIR/release"
days="${1:-218}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/crest-sandbox" serve --port "$port" --first-day 2023-01-01 --days "$days" --creators 2500 --advertisers 1 >"$work/sandbox.log" 2>&1 &
sandbox=$!
for _ in $(seq 100); do grep -q listening "$work/sandbox.log" && break; sleep 0.1; done
advertiser=$(awk '/^tiktok advertiser/ {print $3}' "$work/sandbox.log")
end=$(date -d "2023-01-01 + $((days - 1)) days" +%F)
TIKTOK_ACCESS_TOKEN=sandbox-token CREST_TIKTOK_BASE_URL="http://127.0.0.1:$port" "$bin/crest-tiktok" --log-format json \
    extract --advertiser-id "$advertiser" --start 2023-01-01 --end "$end" --out "$work/out" --max-qps 0 2>/dev/null
kill $sandbox; wait $sandbox 2>/dev/null || true
"$bin/crest-sandbox" roster --creators 2500 >"$work/roster.csv"
/usr/bin/time -f 'peak memory %M KB' "$bin/crest" --log-format json transform --input "$work/out" \
    --start 2023-01-01 --end "$end" --roster "$work/roster.csv" 2>&1 | grep -v '^{'
cargo bench --locked -q -p crest-transforms --bench map -- "$work/out" "$work/roster.csv" 2>/dev/null | grep round
