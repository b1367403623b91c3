-- One row per creator x platform: the conversions the platform reported
-- (creator_performance, the standard attribution window) beside the
-- conversions the brand's own site credits the creator with under each model
-- (creator_attribution, crest attribute), over the same dates: the dates
-- attributed. assisted_conversions are the site conversions
-- the creator touched but did not close - what a last-click model hides.
CREATE OR REPLACE VIEW {{dataset}}.v_attribution_compare ({{columns}}) AS
WITH per_model AS (
    SELECT
        creator_id,
        platform,
        model,
        SUM(conversions) AS conversions,
        SUM(revenue) AS revenue,
        SUM(assisted_conversions) AS assisted_conversions,
        SUM(touchpoints) AS touchpoints
    FROM {{dataset}}.creator_attribution
    WHERE creator_id IS NOT NULL
    GROUP BY creator_id, platform, model
),
site AS (
    SELECT
        creator_id,
        platform,
        SUM(CASE WHEN model = 'first' THEN conversions END) AS site_first,
        SUM(CASE WHEN model = 'last' THEN conversions END) AS site_last,
        SUM(CASE WHEN model = 'linear' THEN conversions END) AS site_linear,
        SUM(CASE WHEN model = 'position' THEN conversions END) AS site_position,
        SUM(CASE WHEN model = 'time_decay' THEN conversions END) AS site_time_decay,
        SUM(CASE WHEN model = 'last' THEN revenue END) AS site_revenue_last,
        SUM(CASE WHEN model = 'linear' THEN revenue END) AS site_revenue_linear,
        -- A path's creators have a row under every model (a zero share
        -- included), so any one model's counts are the creator's.
        MAX(assisted_conversions) AS assisted_conversions,
        MAX(touchpoints) AS site_touchpoints
    FROM per_model
    GROUP BY creator_id, platform
),
period AS (
    SELECT MIN(date) AS first_date, MAX(date) AS last_date FROM {{dataset}}.creator_attribution
),
reported AS (
    SELECT
        p.creator_id,
        p.platform,
        MAX(p.creator_handle) AS creator_handle,
        SUM(p.conversions) AS platform_conversions,
        SUM(p.conversion_value) AS platform_conversion_value
    FROM {{dataset}}.creator_performance p
    -- Only the dates attributed: a gap in attribution is a gap here too.
    WHERE p.creator_id IS NOT NULL AND p.date IN (SELECT DISTINCT date FROM {{dataset}}.creator_attribution)
    GROUP BY p.creator_id, p.platform
)
SELECT
    COALESCE(s.creator_id, r.creator_id) AS creator_id,
    r.creator_handle,
    COALESCE(s.platform, r.platform) AS platform,
    period.first_date,
    period.last_date,
    r.platform_conversions,
    r.platform_conversion_value,
    s.site_first,
    s.site_last,
    s.site_linear,
    s.site_position,
    s.site_time_decay,
    s.site_revenue_last,
    s.site_revenue_linear,
    s.assisted_conversions,
    s.site_touchpoints,
    CAST(s.site_last AS FLOAT64) / NULLIF(CAST(r.platform_conversions AS FLOAT64), 0) AS site_last_to_platform
FROM site s
FULL OUTER JOIN reported r ON s.creator_id = r.creator_id AND s.platform = r.platform
CROSS JOIN period
