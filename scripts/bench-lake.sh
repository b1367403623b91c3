#!/usr/bin/env bash
# Lake benchmark: extracts TikTok reports from the sandbox (about 4,500 rows a
# day), transforms them, then times `crest load` into a fresh lake and
# `crest query` aggregations over it (DataFusion, in-process), with peak memory.
#
#   scripts/bench-lake.sh              # about 10M canonical rows
#   scripts/bench-lake.sh 1000000      # another size
#   CREST_BASELINE=/path/to/an/older/crest scripts/bench-lake.sh
#                                      # the same steps with another crest binary
#                                      # too, into its own lake, side by side
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --locked -q -p crest-sandbox -p crest-tiktok -p crest
bin="$CARGO_TARGET_DIR/release"
target="${1:-10000000}"
days=$(( (target + 4499) / 4500 ))
work=$(mktemp -d)
# KEEP=1 leaves the work folder (raw, canonical, lake) for a look.
[ -n "${KEEP:-}" ] && echo "work folder: $work" || trap 'rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/crest-sandbox" serve --port "$port" --first-day 2015-01-01 --days "$days" --creators 2500 --advertisers 1 \
    >"$work/sandbox.log" 2>&1 &
sandbox=$!
for _ in $(seq 100); do grep -q listening "$work/sandbox.log" && break; sleep 0.1; done
advertiser=$(awk '/^tiktok advertiser/ {print $3}' "$work/sandbox.log")
end=$(date -d "2015-01-01 + $((days - 1)) days" +%F)
echo "extracting $days days of TikTok reports ..."
TIKTOK_ACCESS_TOKEN=sandbox-token CREST_TIKTOK_BASE_URL="http://127.0.0.1:$port" "$bin/crest-tiktok" --log-format json \
    extract --advertiser-id "$advertiser" --start 2015-01-01 --end "$end" --out "$work/out" --max-qps 0 >/dev/null 2>&1
kill $sandbox; wait $sandbox 2>/dev/null || true
echo "transforming ..."
"$bin/crest-sandbox" roster --creators 2500 >"$work/roster.csv"
"$bin/crest" --log-format json transform --input "$work/out" --start 2015-01-01 --end "$end" \
    --roster "$work/roster.csv" 2>/dev/null | grep "rows out"
measure() { # label, then the command
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/t" "$@" >"$work/stdout" 2>"$work/stderr"
  read -r secs kb <"$work/t"
  printf '%-52s %8.2f s   peak %5d MB\n' "$label" "$secs" $((kb / 1024))
}
rows=$(python3 -c "import json,glob; print(sum(json.load(open(p))['summary']['rows_out'] for p in glob.glob('$work/out/_runs/*.json') if json.load(open(p)).get('stage') == 'transform'))")
steps() { # label prefix, crest binary, lake
  local who=$1 crest=$2 lake=$3
  measure "$who crest load ($rows canonical rows, fresh lake)" "$crest" --log-format json load --input "$work/out" --target "lake:$lake"
  secs=$(cut -d' ' -f1 "$work/t")
  python3 -c "print(f'  load rate: {$rows / $secs:,.0f} canonical rows/s')"
  measure "$who crest load again (already loaded: no-op)" "$crest" --log-format json load --input "$work/out" --target "lake:$lake"
  measure "$who crest load --force (every date unchanged)" "$crest" --log-format json load --input "$work/out" --target "lake:$lake" --force
  measure "$who query: totals by platform and tier" "$crest" query --target "lake:$lake" \
      "SELECT platform, creator_tier, COUNT(*) AS n, SUM(impressions) AS imps, SUM(clicks) AS clicks, SUM(spend) AS spend FROM creator_performance GROUP BY platform, creator_tier"
  head -5 "$work/stdout"
  measure "$who query: one week (date filter)" "$crest" query --target "lake:$lake" \
      "SELECT COUNT(*) AS n, SUM(spend) AS spend FROM creator_performance WHERE date BETWEEN '2018-03-01' AND '2018-03-07'"
  cat "$work/stdout"
  measure "$who query: v_creator_daily, 10 cheapest creators by CPC" "$crest" query --target "lake:$lake" \
      "SELECT creator_id, SUM(clicks) AS clicks, SUM(spend_reporting) / SUM(clicks) AS cpc FROM v_creator_daily GROUP BY creator_id ORDER BY cpc LIMIT 10"
  head -5 "$work/stdout"
}
if [ -n "${CREST_BASELINE:-}" ]; then
  steps "[baseline]" "$CREST_BASELINE" "$work/lake-baseline"
  rm -rf "$work/lake-baseline"
fi
steps "[this]" "$bin/crest" "$work/lake"
# Hourly runs leave many small files: compaction, then the totals query again.
measure "[this] crest lake optimize" "$bin/crest" lake optimize --target "lake:$work/lake"
cat "$work/stdout"
measure "[this] crest lake vacuum --dry-run" "$bin/crest" lake vacuum --target "lake:$work/lake" --dry-run
