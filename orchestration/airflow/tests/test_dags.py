"""crest's DAGs in real Airflow 3: they import, their task graphs are what the
README says, and the pipeline runs end to end (dag.test) against the platform
sandbox into a lake, twice for the same day without doubling a row."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pendulum
import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"
BIN = Path(os.environ["CREST_BIN_DIR"])


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_imports(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"crest_pipeline", "crest_decisions"}


def test_the_pipeline_maps_extracts_over_accounts_then_transforms_and_loads(dagbag):
    dag = dagbag.get_dag("crest_pipeline")
    tasks = {t.task_id: t for t in dag.tasks}
    platforms = ("tiktok", "meta", "youtube_channels", "youtube_ads", "ga4")
    for platform in platforms:
        extract = tasks[f"{platform}_extract"]
        assert extract.upstream_task_ids == {f"{platform}_accounts"}
        assert "MappedOperator" in extract.__class__.__name__, "one task per platform × account"
    assert tasks["transform"].upstream_task_ids == {f"{p}_extract" for p in platforms}
    assert tasks["transform"].trigger_rule == "none_failed"
    load = tasks["load"]
    assert load.upstream_task_ids == {"transform"}
    assert load.pool == "crest_lake"
    assert [o.uri for o in load.outlets] == ["crest://canonical/creator_performance"]
    assert tasks["attribute"].upstream_task_ids == {"ga4_extract"}
    assert tasks["load_attribution"].upstream_task_ids == {"attribute"}
    assert tasks["load_attribution"].pool == "crest_lake"
    assert tasks["load_attribution"].outlets == []
    assert extract.partial_kwargs["retries"] == 3
    assert extract.partial_kwargs["retry_exponential_backoff"]


def test_decisions_run_on_the_canonical_asset_and_every_four_hours(dagbag):
    dag = dagbag.get_dag("crest_decisions")
    timetable = dag.timetable
    assert timetable.__class__.__name__ == "AssetOrTimeSchedule"
    assert "crest://canonical/creator_performance" in json.dumps(timetable.serialize(), default=str)
    assert "0 */4 * * *" in json.dumps(timetable.serialize(), default=str)
    assert [t.task_id for t in dag.topological_sort()] == ["views", "alerts"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def sandbox(tmp_path):
    port = free_port()
    log = open(tmp_path / "sandbox.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "crest-sandbox"), "serve", "--port", str(port), "--first-day", "2026-01-01", "--days", "20",
         "--creators", "30", "--meta-job-polls", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    for _ in range(100):
        if "listening" in (tmp_path / "sandbox.log").read_text():
            break
        time.sleep(0.1)
    yield port, (tmp_path / "sandbox.log").read_text()
    proc.terminate()
    proc.wait(10)


def lake_count(lake: Path, sql: str) -> str:
    out = subprocess.run(
        [str(BIN / "crest"), "query", "--target", f"lake:{lake}", "--format", "csv", sql],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def test_the_pipeline_runs_a_day_end_to_end_and_again_without_doubling(dagbag, sandbox, tmp_path):
    port, banner = sandbox
    ids = lambda prefix, field: [l.split()[field] for l in banner.splitlines() if l.startswith(prefix)]
    base = f"http://127.0.0.1:{port}"
    roster = tmp_path / "roster.csv"
    roster.write_text(subprocess.run([str(BIN / "crest-sandbox"), "roster", "--creators", "30"],
                                     capture_output=True, text=True, check=True).stdout)
    lake = tmp_path / "lake"
    # The brand's site: a GA4 export of the same creators, as files.
    site = tmp_path / "site"
    subprocess.run([str(BIN / "crest-sandbox"), "ga4-export", "--creators", "30", "--days", "20",
                    "--first-day", "2025-12-25", "--users", "400", "--out", str(site)], check=True, capture_output=True)
    program = {
        "out": str(tmp_path / "out"),
        "target": f"lake:{lake}",
        "roster": str(roster),
        "bin_dir": str(BIN),
        "tiktok": ids("tiktok advertiser", 2),
        "meta": ids("meta ad account", 3),
        "youtube_ads": ids("google ads customer", 3),
        "meta_poll_initial_ms": 20,
        "ga4": ["271828182"],
        "ga4_from": str(site),
    }
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps({"crest_program": json.dumps(program)}))
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({
        "crest_tiktok": {"conn_type": "generic", "password": "sandbox-token", "host": base},
        "crest_meta": {"conn_type": "generic", "password": "sandbox-meta-token", "host": base},
        "crest_google": {"conn_type": "generic", "login": "sandbox-client", "password": "sandbox-client-secret",
                         "extra": json.dumps({"refresh_token": "sandbox-refresh-token",
                                              "developer_token": "sandbox-developer-token",
                                              "oauth_url": f"{base}/token", "ads_url": base,
                                              "analytics_url": base, "data_url": base})},
    }))
    subprocess.run(["airflow", "pools", "set", "crest_lake", "1", "loads into one lake take turns"],
                   check=True, capture_output=True)
    dag = dagbag.get_dag("crest_pipeline")
    day = pendulum.datetime(2026, 1, 10, tz="UTC")
    # A manual run's data interval is the last complete one before its logical
    # date: triggered on the 11th, it reads the 10th.
    run = dag.test(logical_date=day.add(days=1), run_after=day.add(days=1, hours=1), variable_file_path=str(variables),
                   conn_file_path=str(connections))
    assert run.state == "success", [(ti.task_id, ti.map_index, ti.state) for ti in run.get_task_instances()]
    rows = lake_count(lake, "SELECT COUNT(*) FROM creator_performance WHERE date = '2026-01-10'")
    assert int(rows) > 0
    platforms = lake_count(lake, "SELECT COUNT(DISTINCT platform) FROM creator_performance")
    assert platforms == "3"
    credited_sql = "SELECT SUM(conversions) FROM creator_attribution WHERE model = 'linear' AND date = '2026-01-10'"
    credited = lake_count(lake, credited_sql)
    assert float(credited) > 0, "the site's conversions of the day are credited"

    # A clear or a retry of the same day: the same rows, none twice.
    again = dag.test(logical_date=day.add(days=1), variable_file_path=str(variables), conn_file_path=str(connections),
                     run_after=day.add(days=1, hours=2))
    assert again.state == "success"
    assert lake_count(lake, "SELECT COUNT(*) FROM creator_performance WHERE date = '2026-01-10'") == rows
    assert lake_count(lake, credited_sql) == credited, "no credit twice"
    assert lake_count(lake, "SELECT COUNT(*) FROM (SELECT date, hour, platform, placement, account_id, ad_id, content_id "
                            "FROM creator_performance GROUP BY 1, 2, 3, 4, 5, 6, 7 HAVING COUNT(*) > 1)") == "0"
