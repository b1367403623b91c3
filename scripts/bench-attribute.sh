#!/usr/bin/env bash
# Site attribution benchmark: a GA4 export of N users from the sandbox's world
# (newline-delimited JSON), `crest-ga4 extract --from` into raw Parquet, then
# `crest attribute` under all five models, once holding every user at once and
# once in groups of at most 100,000 events, for each export size: wall time and
# peak memory. Usage: scripts/bench-attribute.sh [USERS ...] (default 150000 300000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --locked -q -p crest-sandbox -p crest-ga4 -p crest
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/crest-sandbox" roster --creators 500 >"$work/roster.csv"
for users in "${@:-150000 300000}"; do
  for u in $users; do
    rm -rf "$work/export" "$work/out"
    "$bin/crest-sandbox" ga4-export --creators 500 --days 60 --first-day 2026-01-01 --users "$u" --out "$work/export"
    /usr/bin/time -f "  extract: %e s, peak memory %M KB" "$bin/crest-ga4" --log-format json extract --from "$work/export" \
        --property-id 271828182 --start 2026-01-01 --end 2026-03-01 --out "$work/out" 2>&1 | grep -v '^{'
    for max in 100000000 100000; do
      /usr/bin/time -f "  attribute (--max-events-in-memory $max): %e s, peak memory %M KB" \
          "$bin/crest" --log-format json attribute --input "$work/out" --out "$work/attr-$max" --roster "$work/roster.csv" \
          --start 2026-01-11 --end 2026-03-01 --lookback-days 7 --max-events-in-memory "$max" 2>&1 \
          | grep -E 'peak memory|conversions  |group'
    done
  done
done
