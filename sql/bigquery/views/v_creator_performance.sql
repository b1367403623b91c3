-- One row per creator and platform over the evaluation window: paid delivery
-- summed (impressions, link clicks, spend in the reporting currency,
-- conversions under the standard window) with CTR, CPC, CPM, CVR and CPA as
-- ratios of sums, when the creator first had impressions and for how many
-- hours since. The window is campaign-to-date, or the trailing
-- `evaluation_days` of the creator's benchmark row (data, not SQL). The as-of
-- point is the end of the platform's latest hour (or day) with data; times
-- are whole hours since 1970-01-01 UTC so every dialect does the same integer
-- arithmetic. cvr and cpa count the benchmark row's conversion_source: the
-- platforms' conversions, or the site's under one attribution model
-- (site_conversions).
CREATE OR REPLACE VIEW {{dataset}}.v_creator_performance ({{columns}}) AS
WITH scoped AS (
    SELECT
        date,
        platform,
        channel,
        creator_id,
        creator_handle,
        creator_tier,
        disclosure_status,
        impressions,
        clicks,
        spend_reporting,
        video_views,
        conversions,
        conversion_value,
        UNIX_DATE(date) * 24 + COALESCE(CAST(hour AS INT64), 0) AS start_h,
        UNIX_DATE(date) * 24 + COALESCE(CAST(hour AS INT64) + 1, 24) AS end_h
    FROM {{dataset}}.creator_performance
    WHERE creator_id IS NOT NULL
),
as_of AS (
    SELECT platform, MAX(date) AS as_of_date, MAX(end_h) AS as_of_h
    FROM scoped
    GROUP BY platform
),
creators AS (
    SELECT
        platform,
        creator_id,
        MAX(creator_handle) AS creator_handle,
        MAX(creator_tier) AS creator_tier,
        MAX(disclosure_status) AS disclosure_status
    FROM scoped
    GROUP BY platform, creator_id
),
-- Per platform x creator tier, the benchmark in force on the as-of date.
benchmark AS (
    SELECT platform, creator_tier, ctr_benchmark, cpc_ceiling, effective_from, evaluation_days, conversion_source
    FROM (
        SELECT
            b.platform,
            b.creator_tier,
            b.ctr_benchmark,
            b.cpc_ceiling,
            b.effective_from,
            b.evaluation_days,
            b.conversion_source,
            ROW_NUMBER() OVER (PARTITION BY b.platform, b.creator_tier ORDER BY b.effective_from DESC) AS newest
        FROM {{dataset}}.benchmarks b
        JOIN as_of a ON a.platform = b.platform
        WHERE b.effective_from <= a.as_of_date
    ) ranked
    WHERE newest = 1
),
judged AS (
    SELECT
        c.platform,
        c.creator_id,
        c.creator_handle,
        c.creator_tier,
        c.disclosure_status,
        a.as_of_date,
        a.as_of_h,
        bm.ctr_benchmark,
        bm.cpc_ceiling,
        bm.effective_from AS benchmark_effective_from,
        bm.evaluation_days,
        COALESCE(bm.conversion_source, 'platform') AS conversion_source,
        CASE
            WHEN bm.evaluation_days IS NULL THEN NULL
            ELSE UNIX_DATE(a.as_of_date) * 24 + 24 - CAST(bm.evaluation_days AS INT64) * 24
        END AS window_start_h
    FROM creators c
    JOIN as_of a ON a.platform = c.platform
    LEFT JOIN benchmark bm ON bm.platform = c.platform AND bm.creator_tier = c.creator_tier
),
summed AS (
    SELECT
        j.platform,
        j.creator_id,
        SUM(CASE WHEN s.channel = 'paid' THEN 1 ELSE 0 END) AS paid_rows,
        SUM(CASE WHEN s.channel = 'paid' THEN s.impressions END) AS impressions,
        SUM(CASE WHEN s.channel = 'paid' THEN s.clicks END) AS clicks,
        SUM(CASE WHEN s.channel = 'paid' THEN s.spend_reporting END) AS spend_reporting,
        SUM(CASE WHEN s.channel = 'paid' THEN s.conversions END) AS conversions,
        SUM(CASE WHEN s.channel = 'paid' THEN s.conversion_value END) AS conversion_value,
        SUM(s.video_views) AS video_views,
        MIN(CASE WHEN s.channel = 'paid' AND s.impressions > 0 THEN s.start_h END) AS first_active_h,
        MIN(s.date) AS first_date
    FROM judged j
    JOIN scoped s ON s.platform = j.platform AND s.creator_id = j.creator_id
    WHERE j.window_start_h IS NULL OR s.start_h >= j.window_start_h
    GROUP BY j.platform, j.creator_id
),
-- Where the benchmark row names a site model (conversion_source site_last,
-- ...): the site's conversions credited to the creator under that model by
-- crest attribute, on the conversion dates of the same window: from the
-- creator's first day in it to the platform's as-of date.
site AS (
    SELECT j.platform, j.creator_id, SUM(a.conversions) AS conversions
    FROM judged j
    JOIN summed sm ON sm.platform = j.platform AND sm.creator_id = j.creator_id
    JOIN {{dataset}}.creator_attribution a
        ON a.platform = j.platform AND a.creator_id = j.creator_id AND 'site_' || a.model = j.conversion_source
    WHERE a.date >= sm.first_date AND a.date <= j.as_of_date
    GROUP BY j.platform, j.creator_id
),
-- How far the site's attribution reaches: no attribution at all is not
-- tracked (null), not zero, and hours after its last date are not judged.
attributed AS (
    SELECT MAX(date) AS last_date, UNIX_DATE(MAX(date)) * 24 + 24 AS end_h FROM {{dataset}}.creator_attribution
),
site_window AS (
    SELECT
        j.platform,
        j.creator_id,
        CASE
            WHEN j.conversion_source = 'platform' OR t.last_date IS NULL THEN NULL
            ELSE COALESCE(x.conversions, 0)
        END AS site_conversions,
        CASE
            WHEN j.conversion_source <> 'platform' AND t.end_h < j.as_of_h THEN t.end_h
            ELSE j.as_of_h
        END AS conversion_as_of_h
    FROM judged j
    CROSS JOIN attributed t
    LEFT JOIN site x ON x.platform = j.platform AND x.creator_id = j.creator_id
)
SELECT
    j.platform,
    j.creator_id,
    j.creator_handle,
    j.creator_tier,
    j.disclosure_status,
    j.as_of_date,
    j.evaluation_days,
    COALESCE(s.paid_rows, 0) AS paid_rows,
    s.impressions,
    s.clicks,
    s.spend_reporting,
    s.conversions,
    s.conversion_value,
    s.video_views,
    CAST(s.clicks AS FLOAT64) / NULLIF(CAST(s.impressions AS FLOAT64), 0) AS ctr,
    CAST(s.spend_reporting AS FLOAT64) / NULLIF(CAST(s.clicks AS FLOAT64), 0) AS cpc,
    CAST(s.spend_reporting AS FLOAT64) * 1000 / NULLIF(CAST(s.impressions AS FLOAT64), 0) AS cpm,
    CAST(CASE WHEN j.conversion_source = 'platform' THEN s.conversions ELSE sw.site_conversions END AS FLOAT64)
        / NULLIF(CAST(s.clicks AS FLOAT64), 0) AS cvr,
    CAST(s.spend_reporting AS FLOAT64)
        / NULLIF(CAST(CASE WHEN j.conversion_source = 'platform' THEN s.conversions ELSE sw.site_conversions END AS FLOAT64), 0)
        AS cpa,
    TIMESTAMP_SECONDS(s.first_active_h * 3600) AS first_active_at,
    j.as_of_h - s.first_active_h AS hours_active,
    j.ctr_benchmark,
    j.cpc_ceiling,
    j.benchmark_effective_from,
    j.conversion_source,
    sw.site_conversions,
    sw.conversion_as_of_h - s.first_active_h AS conversion_hours_active
FROM judged j
LEFT JOIN summed s ON s.platform = j.platform AND s.creator_id = j.creator_id
LEFT JOIN site_window sw ON sw.platform = j.platform AND sw.creator_id = j.creator_id
