#!/usr/bin/env bash
# The demo, no credentials needed: starts the platform sandbox on a free port,
# extracts January's TikTok ad reports, Meta insights, five creators' and the brand's YouTube
# videos and the brand's YouTube ads (Google Ads) into ./crest-out, transforms them into the canonical
# creator_performance table (creators resolved through the sandbox's roster,
# EUR and GBP spend converted to USD), loads that into the embedded lake
# (./crest-lake) and asks it a question with SQL, and stops the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
out="${1:-./crest-out}"
lake="${2:-./crest-lake}"
cargo build --release --locked -q -p crest-sandbox -p crest-tiktok -p crest-meta -p crest-youtube -p crest
bin="$CARGO_TARGET_DIR/release"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
"$bin/crest-sandbox" serve --port "$port" --first-day 2026-01-01 --days 60 >"$work/sandbox.log" 2>&1 &
sandbox=$!
trap 'kill $sandbox 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q listening "$work/sandbox.log" && break; sleep 0.1; done
cat "$work/sandbox.log"
advertisers=$(awk '/^tiktok advertiser/ {print $3}' "$work/sandbox.log" | paste -sd, -)
accounts=$(awk '/^meta ad account/ {print $4}' "$work/sandbox.log" | paste -sd, -)
channels=$(awk '/^youtube channels/ {print $3}' "$work/sandbox.log"),$(awk '/^youtube brand channel/ {print $4}' "$work/sandbox.log")
customers=$(awk '/^google ads customer/ {print $4}' "$work/sandbox.log" | paste -sd, -)

echo; echo "== crest-tiktok check, extract"
export TIKTOK_ACCESS_TOKEN=sandbox-token CREST_TIKTOK_BASE_URL="http://127.0.0.1:$port"
"$bin/crest-tiktok" check --advertiser-id "$advertisers"
"$bin/crest-tiktok" extract --advertiser-id "$advertisers" --start 2026-01-01 --end 2026-01-31 --out "$out"

echo; echo "== crest-meta extract"
export META_ACCESS_TOKEN=sandbox-meta-token CREST_META_BASE_URL="http://127.0.0.1:$port"
"$bin/crest-meta" extract --account-id "$accounts" --start 2026-01-01 --end 2026-01-31 --out "$out" --poll-initial-ms 100

echo; echo "== crest-youtube extract (creators' own videos, the brand's YouTube ads)"
export GOOGLE_CLIENT_ID=sandbox-client GOOGLE_CLIENT_SECRET=sandbox-client-secret GOOGLE_REFRESH_TOKEN=sandbox-refresh-token
export GOOGLE_ADS_DEVELOPER_TOKEN=sandbox-developer-token CREST_GOOGLE_ADS_BASE_URL="http://127.0.0.1:$port"
export CREST_GOOGLE_OAUTH_URL="http://127.0.0.1:$port/token" CREST_YOUTUBE_ANALYTICS_BASE_URL="http://127.0.0.1:$port" CREST_YOUTUBE_DATA_BASE_URL="http://127.0.0.1:$port"
"$bin/crest-youtube" extract --channel-id "$channels" --ads-customer-id "$customers" \
    --start 2026-01-01 --end 2026-01-31 --out "$out"

echo; echo "== crest transform"
"$bin/crest-sandbox" roster >"$work/roster.csv"
{ echo "date,currency,rate"; for d in $(seq -w 1 31); do echo "2026-01-$d,EUR,1.0$((10#$d % 10))"; echo "2026-01-$d,GBP,1.2$((10#$d % 10))"; done; } >"$work/fx.csv"
"$bin/crest" transform --input "$out" --start 2026-01-01 --end 2026-01-31 \
    --roster "$work/roster.csv" --fx "$work/fx.csv" --reporting-currency USD

echo; echo "== crest load (into the lake), crest query"
"$bin/crest" load --input "$out" --target "lake:$lake"
"$bin/crest" query --target "lake:$lake" \
    "SELECT platform, channel, COUNT(*) AS rows, SUM(impressions) AS impressions, SUM(clicks) AS clicks,
            ROUND(SUM(spend_reporting), 2) AS spend_usd, ROUND(SUM(conversions), 1) AS conversions_7d_1d
     FROM creator_performance GROUP BY platform, channel ORDER BY platform, channel"
"$bin/crest" query --target "lake:$lake" \
    "SELECT creator_handle, creator_tier, SUM(clicks) AS clicks, ROUND(SUM(spend_reporting), 2) AS spend_usd,
            ROUND(SUM(spend_reporting) / SUM(clicks), 3) AS cpc_usd
     FROM v_creator_daily WHERE channel = 'paid' GROUP BY creator_handle, creator_tier ORDER BY cpc_usd LIMIT 5"
echo
echo "raw: $out/raw/{tiktok,meta,youtube}/  canonical: $out/canonical/  lake: $lake/  manifests: $out/_runs/, $lake/_loads/"
