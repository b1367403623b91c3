#!/usr/bin/env bash
# The demo: starts the platform sandbox on a free port, extracts January's TikTok
# ad reports for both sandbox advertisers into ./crest-out, and stops the sandbox.
# No credentials needed: the sandbox accepts the token 'sandbox-token'.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
out="${1:-./crest-out}"
cargo build --release --locked -q -p crest-sandbox -p crest-tiktok
bin="$CARGO_TARGET_DIR/release"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin/crest-sandbox" serve --port "$port" --first-day 2026-01-01 --days 60 >"$log" 2>&1 &
sandbox=$!
trap 'kill $sandbox 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 50); do grep -q listening "$log" && break; sleep 0.1; done
cat "$log"
advertisers=$(awk '/^tiktok advertiser/ {print $3}' "$log" | paste -sd, -)

export TIKTOK_ACCESS_TOKEN=sandbox-token CREST_TIKTOK_BASE_URL="http://127.0.0.1:$port"
"$bin/crest-tiktok" check --advertiser-id "$advertisers"
"$bin/crest-tiktok" extract --advertiser-id "$advertisers" --start 2026-01-01 --end 2026-01-31 --out "$out"
echo
echo "raw Parquet files under $out/raw/tiktok/ad_daily/, run manifest under $out/_runs/"
