"""crest's decision layer: after every load (the canonical Asset) and at
least every four hours during a flight, as the brief asks, apply the views,
load the benchmarks, and send the tier changes to Slack and/or e-mail.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from crest_common import CANONICAL, DAG_DEFAULTS, LAKE_POOL, program, run_crest


@dag(
    dag_id="crest_decisions",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 */4 * * *", timezone="UTC"),
        assets=[CANONICAL],
    ),
    max_active_runs=1,
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def crest_decisions():
    # Benchmarks and views write to the lake: they take turns with loads.
    @task(pool=LAKE_POOL)
    def views() -> None:
        p = program()
        target = ["--target", p["target"]] if p.get("target") else []
        if p.get("benchmarks"):
            run_crest("crest", ["benchmarks", "load", p["benchmarks"], *target], [])
        run_crest("crest", ["views", "apply", *target], [])

    @task
    def alerts() -> None:
        p = program()
        channels = [c for c in p.get("alerts") or [] if c in ("slack", "email")]
        target = ["--target", p["target"]] if p.get("target") else []
        if not channels:
            # Evaluate and print what would be sent; nothing is stored.
            run_crest("crest", ["alerts", "--dry-run", *target], [])
            return
        run_crest("crest", ["alerts", *[f"--{c}" for c in channels], *target], ["crest_slack", "crest_smtp"])

    views() >> alerts()


crest_decisions()
