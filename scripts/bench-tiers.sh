#!/usr/bin/env bash
# Decision-layer benchmark: 500 creators × 3 platforms × 90 days of hourly paid
# rows (3.24M canonical rows) loaded into a fresh lake with the default
# benchmarks, then v_creator_tier, v_budget_reallocation and `crest alerts`
# (a first evaluation, then one with nothing changed), timed with peak memory.
#
#   scripts/bench-tiers.sh             # 500 creators, 90 days
#   scripts/bench-tiers.sh 200 30      # another size
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
creators="${1:-500}" days="${2:-90}"
cargo build --release --locked -q -p crest --bins --example tier_fixture
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work folder: $work" || trap 'rm -rf "$work"' EXIT
"$bin/examples/tier_fixture" "$work/out" "$creators" "$days"
measure() { # label, then the command
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/t" "$@" >"$work/stdout" 2>"$work/stderr" || { cat "$work/stderr"; exit 1; }
  read -r secs kb <"$work/t"
  printf '%-56s %8.2f s   peak %5d MB\n' "$label" "$secs" $((kb / 1024))
}
measure "crest load (fresh lake)" "$bin/crest" --log-format json load --input "$work/out" --target "lake:$work/lake"
"$bin/crest" benchmarks load benchmarks/default.csv --target "lake:$work/lake" >/dev/null
measure "v_creator_tier (every creator × platform)" "$bin/crest" query --target "lake:$work/lake" --format csv \
    "SELECT * FROM v_creator_tier"
echo "  $(($(wc -l <"$work/stdout") - 1)) rows; by tier:"
"$bin/crest" query --target "lake:$work/lake" "SELECT tier, COUNT(*) AS n FROM v_creator_tier GROUP BY tier ORDER BY tier" | sed 's/^/  /'
measure "v_budget_reallocation" "$bin/crest" query --target "lake:$work/lake" --format csv "SELECT * FROM v_budget_reallocation"
measure "crest alerts --dry-run (first evaluation)" "$bin/crest" alerts --dry-run --target "lake:$work/lake"
export CREST_SMTP_HOST=127.0.0.1 CREST_SMTP_PORT=9 CREST_ALERT_EMAIL_FROM=a@b.example CREST_ALERT_EMAIL_TO=c@d.example
# A webhook that takes anything: a one-line HTTP server on loopback.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$port" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0))); self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
hook=$!
trap 'kill $hook 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.5
export CREST_SLACK_WEBHOOK_URL="http://127.0.0.1:$port/hook"
measure "crest alerts --slack (first evaluation, sent)" "$bin/crest" alerts --slack --target "lake:$work/lake"
measure "crest alerts --slack (nothing changed)" "$bin/crest" alerts --slack --target "lake:$work/lake"
