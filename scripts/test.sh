#!/usr/bin/env bash
# crest's test command: every unit and integration test of the workspace.
# Connector tests start the platform sandbox themselves on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}"
cargo test --workspace --locked "$@"
