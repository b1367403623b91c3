#!/usr/bin/env bash
# The warehouse emulators the loader tests run against, installed into local
# virtualenvs (nothing system-wide) and started on free loopback ports:
#   BigQuery  — bqemulator (REST + gRPC Storage Write API), DuckDB inside
#   Snowflake — fakesnow's server (Snowflake's REST protocol), DuckDB inside
#   SMTP      — aiosmtpd, installed here and started by the alert tests
#               themselves (each with its own STARTTLS certificate and mailbox)
#   Delta     — the Python deltalake and polars packages, the lake tests'
#               independent readers of the lake's Delta tables
#
#   scripts/emulators.sh install        # idempotent
#   scripts/emulators.sh start DIR      # writes DIR/env (source it), DIR/*.log, DIR/*.pid
#   scripts/emulators.sh stop DIR
set -euo pipefail
cd "$(dirname "$0")/.."
root="${CREST_EMULATORS_DIR:-$HOME/.cache/crest/emulators}"
py="${PYTHON:-python3}"

# Pinned, verified together. bqemulator and fakesnow pin different DuckDB
# versions, hence two virtualenvs.
BQ_PKGS=(bqemulator==1.4.0 duckdb==1.5.5 duckdb-extension-spatial==1.5.5 numpy)
SNOW_PKGS=("fakesnow[server]==0.12.1" "snowflake-connector-python<5")
SMTP_PKGS=(aiosmtpd==1.4.6)
DELTA_PKGS=(deltalake==1.6.6 polars==2.1.0 pyarrow==26.0.1)

install() {
    local stamp="$root/installed-v1"
    if [[ ! -f "$stamp" || ! -x "$root/bq/bin/bqemulator" || ! -x "$root/snow/bin/fakesnow" ]]; then
        mkdir -p "$root"
        echo "installing the warehouse emulators into $root"
        "$py" -m venv "$root/bq"
        "$root/bq/bin/pip" install -q --disable-pip-version-check "${BQ_PKGS[@]}"
        "$py" -m venv "$root/snow"
        "$root/snow/bin/pip" install -q --disable-pip-version-check "${SNOW_PKGS[@]}"
        touch "$stamp"
    fi
    if [[ ! -f "$root/installed-smtp-v1" || ! -x "$root/smtp/bin/python" ]]; then
        echo "installing the SMTP test server (aiosmtpd) into $root/smtp"
        "$py" -m venv "$root/smtp"
        "$root/smtp/bin/pip" install -q --disable-pip-version-check "${SMTP_PKGS[@]}"
        touch "$root/installed-smtp-v1"
    fi
    if [[ ! -f "$root/installed-delta-v1" || ! -x "$root/delta/bin/python" ]]; then
        echo "installing the Delta readers (deltalake, polars) into $root/delta"
        "$py" -m venv "$root/delta"
        "$root/delta/bin/pip" install -q --disable-pip-version-check "${DELTA_PKGS[@]}"
        touch "$root/installed-delta-v1"
    fi
}

# bqemulator loads DuckDB's spatial extension at start-up and cannot download
# it offline: put the packaged one where DuckDB looks.
spatial() {
    local src
    src=$("$root/bq/bin/python" -c 'import duckdb_extension_spatial, os; print(os.path.dirname(duckdb_extension_spatial.__file__))')
    local ext="$src/extensions/v1.5.5/spatial.duckdb_extension"
    local dst="$HOME/.duckdb/extensions/v1.5.5/linux_amd64"
    mkdir -p "$dst"
    [[ -f "$dst/spatial.duckdb_extension" ]] || cp "$ext" "$dst/"
}

free_port() {
    "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    local port=$1 name=$2 log=$3
    for _ in $(seq 300); do
        if "$py" -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $port)))"; then
            return
        fi
        sleep 0.2
    done
    echo "the $name emulator did not start within 60 s; its log:" >&2
    tail -n 30 "$log" >&2
    exit 1
}

start() {
    local dir=$1
    mkdir -p "$dir"
    install
    spatial
    local rest grpc snow
    rest=$(free_port)
    grpc=$(free_port)
    snow=$(free_port)
    (cd "$dir" && exec "$root/bq/bin/bqemulator" start --rest-port "$rest" --grpc-port "$grpc" --project crest-test \
        --log-level warning >"$dir/bigquery.log" 2>&1) &
    echo $! >"$dir/bigquery.pid"
    (cd "$dir" && exec "$root/snow/bin/fakesnow" -s -p "$snow" >"$dir/snowflake.log" 2>&1) &
    echo $! >"$dir/snowflake.pid"
    wait_port "$rest" BigQuery "$dir/bigquery.log"
    wait_port "$grpc" "BigQuery Storage" "$dir/bigquery.log"
    wait_port "$snow" Snowflake "$dir/snowflake.log"
    cat >"$dir/env" <<EOF
export CREST_TEST_BIGQUERY_URL=http://127.0.0.1:$rest
export CREST_TEST_BIGQUERY_STORAGE_URL=http://127.0.0.1:$grpc
export CREST_TEST_BIGQUERY_PROJECT=crest-test
export CREST_TEST_SNOWFLAKE_URL=http://127.0.0.1:$snow
export CREST_TEST_SMTPD_PYTHON=$root/smtp/bin/python
export CREST_TEST_DELTA_PYTHON=$root/delta/bin/python
EOF
    echo "emulators up: BigQuery REST :$rest gRPC :$grpc, Snowflake :$snow"
}

stop() {
    local dir=$1
    for name in bigquery snowflake; do
        if [[ -f "$dir/$name.pid" ]]; then
            kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
            rm -f "$dir/$name.pid"
        fi
    done
}

case "${1:-}" in
    install) install; spatial ;;
    start) start "${2:?start DIR}" ;;
    stop) stop "${2:?stop DIR}" ;;
    *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
