"""What crest's DAGs share: the program (accounts and paths) from an Airflow
Variable, credentials from Airflow Connections mapped onto the environment
variables crest reads, and running a crest binary with JSON logs.

Secrets travel only in the child process's environment: never in a DAG file,
a rendered command line or a log line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import Asset, Variable

#: The canonical table every load updates; the decisions DAG runs on it.
CANONICAL = Asset("crest://canonical/creator_performance")

#: Retries with exponential backoff; crest's stages are idempotent, so a retry,
#: a clear or a backfill replaces what a run wrote and never doubles it.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "crest",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
}

#: Bounds how many tasks write to the target at once. Loads need no pool of one:
#: a lake's tables take concurrent commits (Delta Lake; a load that lost the race
#: redoes its commit) and warehouses merge concurrent loads. Create it before the
#: first run: `airflow pools set crest_lake 4 "crest target writes"`.
LAKE_POOL = "crest_lake"

#: Days before the data interval the transform re-reads: the extracts' state
#: re-reads each platform's restatement window (TikTok 7, Meta 28, Google Ads
#: its conversion actions' longest click window, 30 by default) and those days
#: must reach the target too. `lookback_days` in the program overrides it.
TRANSFORM_LOOKBACK_DAYS = 30

#: What every crest DAG is declared with.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": datetime(2026, 1, 1, tzinfo=timezone.utc),
    "catchup": False,
    "default_args": DEFAULT_ARGS,
    "tags": ["crest"],
}

#: Airflow Connection → crest's environment variables. `password`, `login`,
#: `host` and `port` are the Connection's fields; `extra.NAME` a key of its extra.
CONNECTIONS: dict[str, dict[str, str]] = {
    "crest_tiktok": {"password": "TIKTOK_ACCESS_TOKEN", "host": "CREST_TIKTOK_BASE_URL"},
    "crest_meta": {"password": "META_ACCESS_TOKEN", "host": "CREST_META_BASE_URL"},
    "crest_google": {
        "login": "GOOGLE_CLIENT_ID",
        "password": "GOOGLE_CLIENT_SECRET",
        "extra.refresh_token": "GOOGLE_REFRESH_TOKEN",
        "extra.developer_token": "GOOGLE_ADS_DEVELOPER_TOKEN",
        "extra.oauth_url": "CREST_GOOGLE_OAUTH_URL",
        "extra.analytics_url": "CREST_YOUTUBE_ANALYTICS_BASE_URL",
        "extra.data_url": "CREST_YOUTUBE_DATA_BASE_URL",
        "extra.ads_url": "CREST_GOOGLE_ADS_BASE_URL",
    },
    "crest_ga4": {
        "password": "GOOGLE_OAUTH_ACCESS_TOKEN",
        "host": "CREST_BIGQUERY_BASE_URL",
        "extra.key_file": "GOOGLE_APPLICATION_CREDENTIALS",
    },
    "crest_slack": {"password": "CREST_SLACK_WEBHOOK_URL"},
    "crest_smtp": {
        "host": "CREST_SMTP_HOST",
        "port": "CREST_SMTP_PORT",
        "login": "CREST_SMTP_USER",
        "password": "CREST_SMTP_PASSWORD",
        "extra.from": "CREST_ALERT_EMAIL_FROM",
        "extra.to": "CREST_ALERT_EMAIL_TO",
    },
}

#: Exit codes crest documents that a retry cannot fix: bad config or input (2),
#: credentials refused (3), data that does not reconcile or fit (6).
FINAL_EXIT_CODES = {2, 3, 6}


def program() -> dict[str, Any]:
    """The program, from the JSON Variable `crest_program`:

    {"out": "s3://bucket/crest", "target": "lake:s3://bucket/lake",
     "roster": "s3://bucket/config/roster.csv", "fx": null, "benchmarks": null,
     "bin_dir": "/opt/crest/bin",
     "tiktok": ["7265…"], "meta": ["act_8798…"], "youtube_channels": ["UC…"],
     "youtube_ads": ["123-456-7890"], "alerts": ["slack"],
     "ga4": ["123456789"], "ga4_project": "my-gcp-project"}   # or "ga4_from": "gs://…"
    """
    value = Variable.get("crest_program", deserialize_json=True)
    if not isinstance(value, dict) or not value.get("out"):
        raise ValueError("the Variable crest_program needs at least an `out` location")
    return value


def crest_env(conn_ids: list[str]) -> dict[str, str]:
    """The child's environment: this worker's, plus each Connection mapped
    onto crest's variables. A Connection that does not exist is left out:
    the binary then says which variable it needs."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

    env = dict(os.environ)
    for conn_id in conn_ids:
        try:
            conn = Connection.get(conn_id)
        except (AirflowNotFoundException, AirflowRuntimeError):
            continue
        extra = conn.extra_dejson or {}
        for field, var in CONNECTIONS[conn_id].items():
            value = extra.get(field[6:]) if field.startswith("extra.") else getattr(conn, field, None)
            if value not in (None, ""):
                env[var] = str(value)
    # crest's own events stay on; the libraries' at warn.
    env.setdefault("CREST_LOG", "info")
    return env


def binary(name: str) -> str:
    bin_dir = program().get("bin_dir")
    path = os.path.join(bin_dir, name) if bin_dir else shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"{name} not found (set bin_dir in the crest_program Variable, or put it on PATH)"
        )
    return path


def run_crest(name: str, args: list[str], conn_ids: list[str]) -> str:
    """Runs a crest binary with JSON logs; its events go to the task log.
    Returns stdout. A final exit code fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    command = [binary(name), "--log-format", "json", *args]
    # The command line holds ids and paths only; the secrets are in `env`.
    print("running", " ".join(command), flush=True)
    # Events stream into the task log as they happen (a killed task keeps what
    # it logged); stdout is kept for the caller.
    child = subprocess.Popen(command, env=crest_env(conn_ids), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert child.stdout is not None
    for line in child.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    returncode = child.wait()
    if returncode != 0:
        last = next((l for l in reversed(lines) if l.strip()), "")
        try:
            last = json.loads(last).get("fields", {}).get("message", last)
        except (ValueError, AttributeError):
            pass
        message = f"{name} exited {returncode}: {last.strip()}"
        if returncode in FINAL_EXIT_CODES:
            raise AirflowFailException(message)
        raise RuntimeError(message)
    return "".join(lines)
