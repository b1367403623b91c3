#!/usr/bin/env bash
# The demo, no credentials needed: builds crest and runs `crest demo`: the
# platform sandbox in-process, a 150-creator program over 21 days on TikTok,
# Meta and YouTube extracted, transformed, loaded into ./crest-demo/lake and
# judged by the tier views; prints the tier board and the budget reallocation
# and writes ./crest-demo/tier-board.html. Arguments go to `crest demo`
# (e.g. --creators 400 --days 45 --seed 7 --out DIR).
#
# The build is the lean one (no warehouse clients: the demo writes to the
# embedded lake) in the `demo` profile (opt-level 1), so a fresh clone reaches
# its first result sooner; `cargo install --path orchestration` builds the full,
# release crest.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
cargo build --profile demo --locked -q -p crest --no-default-features
exec "$CARGO_TARGET_DIR/demo/crest" demo "$@"
