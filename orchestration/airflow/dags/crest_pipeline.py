"""crest's pipeline, one run per day of data: each platform's extract mapped
over its accounts (one task per platform × account), then the transform of
the day and the load into the target, which updates the canonical Asset.
With a site (`ga4` in the program), its conversions of the day are credited
to creators (`crest attribute`) and loaded too.

Dates come from the run's data interval, so `airflow backfill create` and
clearing a run re-read exactly those days; every stage is idempotent.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from airflow.timetables.interval import CronDataIntervalTimetable

import re

from crest_common import CANONICAL, DAG_DEFAULTS, LAKE_POOL, TRANSFORM_LOOKBACK_DAYS, program, run_crest

#: Per platform: the binary, the flag naming an account, and the Connection.
PLATFORMS = {
    "tiktok": ("crest-tiktok", ["--advertiser-id"], "crest_tiktok"),
    "meta": ("crest-meta", ["--account-id"], "crest_meta"),
    "youtube_channels": ("crest-youtube", ["--channel-id"], "crest_google"),
    "youtube_ads": ("crest-youtube", ["--ads-customer-id"], "crest_google"),
    "ga4": ("crest-ga4", ["--property-id"], "crest_ga4"),
}

#: Days GA4 adds late events to: its extract re-reads them, attribution too.
GA4_LOOKBACK_DAYS = 3


def printed_manifest(printed: str, what: str) -> str:
    """The manifest a crest command printed: this run's own, so a concurrent
    run or a backfill never loads another's."""
    found = re.search(r"manifest (\S+\.json)", printed)
    if not found:
        raise RuntimeError(f"crest {what} printed no manifest")
    return found.group(1)


def interval_dates() -> tuple[str, str]:
    """The data interval as inclusive dates: [start, end) → start..end-1 day."""
    ctx = get_current_context()
    start = ctx["data_interval_start"]
    end = ctx["data_interval_end"]
    last = end.subtract(microseconds=1) if end > start else end
    return start.to_date_string(), last.to_date_string()


@dag(
    dag_id="crest_pipeline",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    # One run at a time: a second run's extracts would replace raw files this
    # run's transform is reading. A backfill walks the days in order.
    max_active_runs=1,
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def crest_pipeline():
    @task
    def accounts(platform: str) -> list[str]:
        return [str(a) for a in program().get(platform) or []]

    @task(max_active_tis_per_dag=8)
    def extract(platform: str, account: str) -> None:
        binary, flag, conn_id = PLATFORMS[platform]
        p = program()
        start, end = interval_dates()
        out = p["out"].rstrip("/")
        args = ["extract", *flag, account, "--start", start, "--end", end, "--out", out,
                "--state", f"{out}/_state/{platform}-{account.replace('/', '_')}.json",
                # Another task of the same account (a retry racing a clear) waits its turn.
                "--wait-for-lease", "600"]
        if platform == "youtube_ads" and p.get("login_customer_id"):
            args += ["--login-customer-id", str(p["login_customer_id"])]
        if platform == "meta" and p.get("meta_poll_initial_ms"):
            args += ["--poll-initial-ms", str(p["meta_poll_initial_ms"])]
        if platform == "ga4" and not p.get("ga4_project") and len(p.get("ga4") or []) > 1:
            raise ValueError("ga4_from is one property's export: list one property in ga4, or use ga4_project")
        if platform == "ga4":
            # The BigQuery export's project, or files a team exported.
            args += ["--project", str(p["ga4_project"])] if p.get("ga4_project") else ["--from", str(p["ga4_from"])]
        run_crest(binary, args, [conn_id])

    @task(trigger_rule="none_failed")
    def transform() -> str:
        p = program()
        start, end = interval_dates()
        # The extracts re-read restated days before the interval: transform them too.
        lookback = int(p.get("lookback_days", TRANSFORM_LOOKBACK_DAYS))
        first = pendulum.parse(start).subtract(days=lookback).to_date_string()
        args = ["transform", "--input", p["out"], "--start", first, "--end", end,
                "--wait-for-lease", "600"]
        for key in ("roster", "fx"):
            if p.get(key):
                args += [f"--{key}", p[key]]
        if p.get("reporting_currency"):
            args += ["--reporting-currency", p["reporting_currency"]]
        return printed_manifest(run_crest("crest", args, []), "transform")

    @task(trigger_rule="none_failed")
    def attribute() -> str:
        p = program()
        if not p.get("ga4"):
            raise AirflowSkipException("no ga4 in the program")
        if not p.get("roster"):
            raise ValueError("the program's ga4 needs a roster: attribution resolves the site's UTMs to creators")
        start, end = interval_dates()
        first = pendulum.parse(start).subtract(days=GA4_LOOKBACK_DAYS).to_date_string()
        out = p["out"].rstrip("/")
        args = ["attribute", "--input", out, "--out", f"{out}/attribution", "--start", first, "--end", end,
                "--roster", p["roster"], "--wait-for-lease", "600"]
        if p.get("attribution_lookback_days"):
            args += ["--lookback-days", str(p["attribution_lookback_days"])]
        return printed_manifest(run_crest("crest", args, []), "attribute")

    @task(pool=LAKE_POOL, outlets=[CANONICAL])
    def load(manifest: str) -> None:
        p = program()
        args = ["load", "--input", manifest, "--create"]
        if p.get("target"):
            args += ["--target", p["target"]]
        run_crest("crest", args, [])

    extracts = [
        extract.override(task_id=f"{platform}_extract").partial(platform=platform).expand(
            account=accounts.override(task_id=f"{platform}_accounts")(platform)
        )
        for platform in PLATFORMS
    ]
    manifest = transform()
    extracts >> manifest
    load(manifest)
    credited = attribute()
    extracts[list(PLATFORMS).index("ga4")] >> credited
    # Attribution changes no creator_performance row: the decisions are not re-run for it.
    load.override(task_id="load_attribution", outlets=[])(credited)


crest_pipeline()
