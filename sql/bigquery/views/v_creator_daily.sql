-- One row per creator, platform and day: the canonical metrics summed, and
-- CTR, CPC, CPM and CVR under crest's one definition (DESIGN: CTR = link
-- clicks / impressions, CPC = spend / clicks, CPM = spend / impressions x 1000,
-- CVR = conversions / clicks). Spend in the reporting currency; rows whose
-- creator is unresolved are left out (see creator_performance for them).
CREATE OR REPLACE VIEW {{dataset}}.v_creator_daily ({{columns}}) AS
SELECT
    date,
    platform,
    channel,
    creator_id,
    MAX(creator_handle) AS creator_handle,
    MAX(creator_tier) AS creator_tier,
    SUM(impressions) AS impressions,
    SUM(clicks) AS clicks,
    SUM(spend_reporting) AS spend_reporting,
    SUM(video_views) AS video_views,
    SUM(conversions) AS conversions,
    SUM(conversion_value) AS conversion_value,
    CAST(SUM(clicks) AS FLOAT64) / NULLIF(CAST(SUM(impressions) AS FLOAT64), 0) AS ctr,
    CAST(SUM(spend_reporting) AS FLOAT64) / NULLIF(CAST(SUM(clicks) AS FLOAT64), 0) AS cpc,
    CAST(SUM(spend_reporting) AS FLOAT64) * 1000 / NULLIF(CAST(SUM(impressions) AS FLOAT64), 0) AS cpm,
    CAST(SUM(conversions) AS FLOAT64) / NULLIF(CAST(SUM(clicks) AS FLOAT64), 0) AS cvr
FROM {{dataset}}.creator_performance
WHERE creator_id IS NOT NULL
GROUP BY date, platform, channel, creator_id
