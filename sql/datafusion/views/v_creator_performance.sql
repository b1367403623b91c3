-- One row per creator and platform over the evaluation window: paid delivery
-- summed (impressions, link clicks, spend in the reporting currency,
-- conversions under the standard window) with CTR, CPC, CPM, CVR and CPA as
-- ratios of sums, when the creator first had impressions and for how many
-- hours since. The window is campaign-to-date, or the trailing
-- `evaluation_days` of the creator's benchmark row (data, not SQL). The as-of
-- point is the end of the platform's latest hour (or day) with data; times
-- are whole hours since 1970-01-01 UTC so every dialect does the same integer
-- arithmetic. The rows are read once: summed per creator, platform and day
-- first, everything after works on those sums. cvr and cpa count the
-- benchmark row's conversion_source: the platforms' conversions, or the
-- site's under one attribution model (site_conversions).
CREATE OR REPLACE VIEW v_creator_performance AS
WITH daily AS (
    SELECT
        platform,
        creator_id,
        date,
        MAX(creator_handle) AS creator_handle,
        MAX(creator_tier) AS creator_tier,
        MAX(disclosure_status) AS disclosure_status,
        SUM(CASE WHEN channel = 'paid' THEN 1 ELSE 0 END) AS paid_rows,
        SUM(CASE WHEN channel = 'paid' THEN impressions END) AS impressions,
        SUM(CASE WHEN channel = 'paid' THEN clicks END) AS clicks,
        SUM(CASE WHEN channel = 'paid' THEN spend_reporting END) AS spend_reporting,
        SUM(CASE WHEN channel = 'paid' THEN conversions END) AS conversions,
        SUM(CASE WHEN channel = 'paid' THEN conversion_value END) AS conversion_value,
        SUM(video_views) AS video_views,
        MIN(CASE WHEN channel = 'paid' AND impressions > 0 THEN COALESCE(CAST(hour AS BIGINT), 0) END) AS first_hour,
        MAX(COALESCE(CAST(hour AS BIGINT) + 1, 24)) AS end_hour
    FROM creator_performance
    WHERE creator_id IS NOT NULL
    GROUP BY platform, creator_id, date
),
framed AS (
    SELECT
        platform,
        creator_id,
        date,
        paid_rows,
        impressions,
        clicks,
        spend_reporting,
        conversions,
        conversion_value,
        video_views,
        CAST(date_part('epoch', date) AS BIGINT) / 3600 + first_hour AS first_h,
        MAX(creator_handle) OVER (PARTITION BY platform, creator_id) AS creator_handle,
        MAX(creator_tier) OVER (PARTITION BY platform, creator_id) AS creator_tier,
        MAX(disclosure_status) OVER (PARTITION BY platform, creator_id) AS disclosure_status,
        MAX(date) OVER (PARTITION BY platform) AS as_of_date,
        MAX(CAST(date_part('epoch', date) AS BIGINT) / 3600 + end_hour) OVER (PARTITION BY platform) AS as_of_h
    FROM daily
),
-- Each day with the benchmark in force on the platform's as-of date for the
-- creator's tier (the newest row from on or before it).
judged AS (
    SELECT
        f.*,
        b.ctr_benchmark,
        b.cpc_ceiling,
        b.effective_from AS benchmark_effective_from,
        b.evaluation_days,
        COALESCE(b.conversion_source, 'platform') AS conversion_source,
        ROW_NUMBER() OVER (PARTITION BY f.platform, f.creator_id, f.date ORDER BY b.effective_from DESC) AS newest
    FROM framed f
    LEFT JOIN benchmarks b
        ON b.platform = f.platform AND b.creator_tier = f.creator_tier AND b.effective_from <= f.as_of_date
),
windowed AS (
    SELECT
        *,
        evaluation_days IS NULL
            OR CAST(date_part('epoch', date) AS BIGINT) / 3600
                >= CAST(date_part('epoch', as_of_date) AS BIGINT) / 3600 + 24 - CAST(evaluation_days AS BIGINT) * 24
            AS in_window
    FROM judged
    WHERE newest = 1
),
summed AS (
    SELECT
        platform,
        creator_id,
        MAX(creator_handle) AS creator_handle,
        MAX(creator_tier) AS creator_tier,
        MAX(disclosure_status) AS disclosure_status,
        MAX(as_of_date) AS as_of_date,
        MAX(evaluation_days) AS evaluation_days,
        MAX(conversion_source) AS conversion_source,
        SUM(CASE WHEN in_window THEN paid_rows ELSE 0 END) AS paid_rows,
        SUM(CASE WHEN in_window THEN impressions END) AS impressions,
        SUM(CASE WHEN in_window THEN clicks END) AS clicks,
        SUM(CASE WHEN in_window THEN spend_reporting END) AS spend_reporting,
        SUM(CASE WHEN in_window THEN conversions END) AS conversions,
        SUM(CASE WHEN in_window THEN conversion_value END) AS conversion_value,
        SUM(CASE WHEN in_window THEN video_views END) AS video_views,
        MIN(CASE WHEN in_window THEN first_h END) AS first_h,
        MIN(CASE WHEN in_window THEN date END) AS first_date,
        MAX(as_of_h) AS as_of_h,
        MAX(ctr_benchmark) AS ctr_benchmark,
        MAX(cpc_ceiling) AS cpc_ceiling,
        MAX(benchmark_effective_from) AS benchmark_effective_from
    FROM windowed
    GROUP BY platform, creator_id
),
-- Where the benchmark row names a site model (conversion_source site_last,
-- ...): the site's conversions credited to the creator under that model by
-- crest attribute, on the conversion dates of the same window: from the
-- creator's first day in it to the platform's as-of date.
site AS (
    SELECT s.platform, s.creator_id, SUM(a.conversions) AS conversions
    FROM summed s
    JOIN creator_attribution a
        ON a.platform = s.platform AND a.creator_id = s.creator_id AND 'site_' || a.model = s.conversion_source
    WHERE a.date >= s.first_date AND a.date <= s.as_of_date
    GROUP BY s.platform, s.creator_id
),
-- How far the site's attribution reaches: no attribution at all is not
-- tracked (null), not zero, and hours after its last date are not judged.
attributed AS (
    SELECT MAX(date) AS last_date, CAST(date_part('epoch', MAX(date)) AS BIGINT) / 3600 + 24 AS end_h
    FROM creator_attribution
),
chosen AS (
    SELECT
        s.*,
        CASE
            WHEN s.conversion_source = 'platform' OR t.last_date IS NULL THEN NULL
            ELSE COALESCE(site.conversions, 0)
        END AS site_conversions,
        CASE
            WHEN s.conversion_source = 'platform' THEN s.as_of_h - s.first_h
            WHEN t.end_h < s.as_of_h THEN t.end_h - s.first_h
            ELSE s.as_of_h - s.first_h
        END AS conversion_hours_active
    FROM summed s
    CROSS JOIN attributed t
    LEFT JOIN site ON site.platform = s.platform AND site.creator_id = s.creator_id
)
SELECT
    platform,
    creator_id,
    creator_handle,
    creator_tier,
    disclosure_status,
    as_of_date,
    evaluation_days,
    paid_rows,
    impressions,
    clicks,
    spend_reporting,
    conversions,
    conversion_value,
    video_views,
    CAST(clicks AS DOUBLE) / NULLIF(CAST(impressions AS DOUBLE), 0) AS ctr,
    CAST(spend_reporting AS DOUBLE) / NULLIF(CAST(clicks AS DOUBLE), 0) AS cpc,
    CAST(spend_reporting AS DOUBLE) * 1000 / NULLIF(CAST(impressions AS DOUBLE), 0) AS cpm,
    CAST(CASE WHEN conversion_source = 'platform' THEN conversions ELSE site_conversions END AS DOUBLE)
        / NULLIF(CAST(clicks AS DOUBLE), 0) AS cvr,
    CAST(spend_reporting AS DOUBLE)
        / NULLIF(CAST(CASE WHEN conversion_source = 'platform' THEN conversions ELSE site_conversions END AS DOUBLE), 0)
        AS cpa,
    to_timestamp_seconds(first_h * 3600) AS first_active_at,
    as_of_h - first_h AS hours_active,
    ctr_benchmark,
    cpc_ceiling,
    benchmark_effective_from,
    conversion_source,
    site_conversions,
    conversion_hours_active
FROM chosen
