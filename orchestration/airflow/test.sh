#!/usr/bin/env bash
# crest's DAGs in real Airflow 3: installs apache-airflow into a venv under
# ~/.cache/crest/airflow (from PyPI, once), starts from an empty metadata
# database (SQLite in a temporary AIRFLOW_HOME) and runs the DAG tests with
# pytest. Needs the crest binaries: CREST_BIN_DIR (default: the debug build).
set -euo pipefail
cd "$(dirname "$0")"
AIRFLOW_VERSION=3.3.2
venv="$HOME/.cache/crest/airflow/venv"
if ! "$venv/bin/python" -c "import airflow, pytest; assert airflow.__version__ == '$AIRFLOW_VERSION'" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "apache-airflow==$AIRFLOW_VERSION" pytest
fi
export CREST_BIN_DIR="${CREST_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/crest/target}/debug}"
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export AIRFLOW_HOME="$home" AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags"
export AIRFLOW__CORE__UNIT_TEST_MODE=False PATH="$venv/bin:$PATH" PYTHONPATH="$PWD/dags"
airflow db migrate >/dev/null 2>&1 || airflow db migrate
python -m pytest -q -p no:cacheprovider tests "$@"
