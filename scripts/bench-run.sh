#!/usr/bin/env bash
# `crest run` end to end: the sandbox serves 200 creators × 3 platforms over the
# last 90 days; one config extracts TikTok, Meta and YouTube (Google Ads) at
# once, transforms, loads into a fresh lake and applies benchmarks and views.
# Then a second run with --since-last and nothing new. Wall time per stage
# (from the run summary) and the process's peak memory.
#
#   scripts/bench-run.sh            # 200 creators, 90 days
#   scripts/bench-run.sh 60 30      # another size
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
creators="${1:-200}" days="${2:-90}"
cargo build --release --locked -q -p crest -p crest-sandbox
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/crest-sandbox" serve --port "$port" --creators "$creators" --days "$days" --spread --meta-job-polls 1 >"$work/sandbox.log" 2>&1 &
sandbox=$!
trap 'kill $sandbox 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q listening "$work/sandbox.log" && break; sleep 0.1; done
list() { awk "/^$1/ {print \$$2}" "$work/sandbox.log" | sed 's/.*/"&"/' | paste -sd, -; }
first=$(awk '/^data:/ {print $2}' "$work/sandbox.log")
last=$(date -u -d yesterday +%F)
"$bin/crest-sandbox" roster --creators "$creators" >"$work/roster.csv"
cat >"$work/crest.toml" <<TOML
out = "$work/out"
target = "lake:$work/lake"
start = "$first"
end = "$last"
roster = "$work/roster.csv"
benchmarks = "$PWD/benchmarks/default.csv"
[tiktok]
advertiser_ids = [$(list "tiktok advertiser" 3)]
[meta]
account_ids = [$(list "meta ad account" 4)]
poll_initial_ms = 20
[youtube]
ads_customer_ids = [$(list "google ads customer" 4)]
TOML
export TIKTOK_ACCESS_TOKEN=sandbox-token CREST_TIKTOK_BASE_URL="http://127.0.0.1:$port"
export META_ACCESS_TOKEN=sandbox-meta-token CREST_META_BASE_URL="http://127.0.0.1:$port"
export GOOGLE_CLIENT_ID=sandbox-client GOOGLE_CLIENT_SECRET=sandbox-client-secret GOOGLE_REFRESH_TOKEN=sandbox-refresh-token
export GOOGLE_ADS_DEVELOPER_TOKEN=sandbox-developer-token CREST_GOOGLE_ADS_BASE_URL="http://127.0.0.1:$port" CREST_GOOGLE_OAUTH_URL="http://127.0.0.1:$port/token"
measure() { # label, then the command
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/t" "$@" >"$work/stdout" 2>"$work/stderr" || { cat "$work/stderr"; exit 1; }
  read -r secs kb <"$work/t"
  printf '%-52s %8.2f s   peak %5d MB\n' "$label" "$secs" $((kb / 1024))
  summary=$(grep -o 'summary .*\.json' "$work/stdout" | cut -d' ' -f2)
  python3 - "$summary" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for st in s["stages"]:
    d = st.get("reports") or {}
    rows = sum(r["rows"] for r in d.values()) if d else st.get("rows_out")
    print(f"  {st['stage']:<10} {st['elapsed_ms'] / 1000:6.2f} s" + (f"   {rows} rows" if rows is not None else ""))
PY
}
measure "crest run ($creators creators, $first..$last, fresh lake)" "$bin/crest" run --config "$work/crest.toml"
measure "crest run --since-last (nothing new)" "$bin/crest" run --config "$work/crest.toml" --since-last
