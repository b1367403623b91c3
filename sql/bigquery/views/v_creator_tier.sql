-- One row per creator and platform: the response protocol's tier and why.
-- gap = CTR / benchmark CTR - 1. red: gap <= -25 %, or no attributed
-- conversion after 72 hours active (only where conversions are tracked: a
-- null is never read as zero). yellow: -25 % < gap <= -10 %, or CPC above
-- the ceiling. accelerate: gap >= +30 % and neither. green: the rest.
-- Precedence red > yellow > accelerate > green. The rules compare sums
-- exactly (clicks x 100 against benchmark x impressions x 75, in decimals),
-- so a gap of exactly -25 % is red on every target; the gaps in percent are
-- for reading. A green or accelerate creator whose disclosure status is not
-- `disclosed` carries a compliance flag. The no-conversion rule reads the
-- benchmark row's conversion_source: the platforms' conversions, or the
-- site's credited under one attribution model, over the hours the site's
-- attribution reaches (conversion_hours_active).
CREATE OR REPLACE VIEW {{dataset}}.v_creator_tier ({{columns}}) AS
WITH p AS (
    SELECT
        *,
        CASE platform WHEN 'tiktok' THEN 'TikTok' WHEN 'meta' THEN 'Meta' WHEN 'youtube' THEN 'YouTube' ELSE platform END
            AS platform_name,
        impressions > 0 AND ctr_benchmark IS NOT NULL AS judged,
        CASE WHEN conversion_source = 'platform' THEN conversions IS NOT NULL ELSE site_conversions IS NOT NULL END
            AS conversions_tracked,
        CASE WHEN conversion_source = 'platform' THEN conversions = 0 ELSE site_conversions = 0 END AS none_converted,
        CASE
            WHEN conversion_source = 'platform' THEN 'no attributed conversion'
            ELSE 'no conversion credited on the site (' || conversion_source || ')'
        END AS no_conversion_text
    FROM {{dataset}}.v_creator_performance
),
rules AS (
    SELECT
        *,
        judged AND CAST(clicks AS NUMERIC) * 100 <= ctr_benchmark * CAST(impressions AS NUMERIC) * 75
            AS ctr_red,
        judged AND CAST(clicks AS NUMERIC) * 100 <= ctr_benchmark * CAST(impressions AS NUMERIC) * 90
            AS ctr_yellow,
        judged AND CAST(clicks AS NUMERIC) * 100 >= ctr_benchmark * CAST(impressions AS NUMERIC) * 130
            AS ctr_accelerate,
        judged AND clicks > 0 AND spend_reporting > cpc_ceiling * CAST(clicks AS NUMERIC) AS cpc_over,
        judged AND conversions_tracked AND none_converted AND conversion_hours_active >= 72 AS no_conversion,
        CAST(ROUND(ABS(ctr / CAST(ctr_benchmark AS FLOAT64) - 1) * 100) AS INT64) AS ctr_gap_abs,
        FORMAT('%.2f', ROUND(CAST(ctr_benchmark AS FLOAT64) * 100, 2)) AS benchmark_text,
        FORMAT('%.2f', ROUND(cpc, 2)) AS cpc_text,
        FORMAT('%.2f', ROUND(CAST(cpc_ceiling AS FLOAT64), 2)) AS ceiling_text
    FROM p
),
tiered AS (
    SELECT
        *,
        CASE
            WHEN NOT judged THEN NULL
            WHEN ctr_red OR no_conversion THEN 'red'
            WHEN ctr_yellow OR cpc_over THEN 'yellow'
            WHEN ctr_accelerate THEN 'accelerate'
            ELSE 'green'
        END AS tier,
        'CTR ' || CAST(ctr_gap_abs AS STRING)
            || CASE WHEN ctr < CAST(ctr_benchmark AS FLOAT64) THEN ' % below the ' ELSE ' % above the ' END
            || benchmark_text || ' % ' || platform_name || ' ' || creator_tier || ' benchmark' AS ctr_text
    FROM rules
)
SELECT
    platform,
    creator_id,
    creator_handle,
    creator_tier,
    disclosure_status,
    as_of_date,
    impressions,
    clicks,
    spend_reporting,
    conversions,
    ctr,
    cpc,
    hours_active,
    ctr_benchmark,
    cpc_ceiling,
    benchmark_effective_from,
    ROUND((ctr / CAST(ctr_benchmark AS FLOAT64) - 1) * 100, 1) AS ctr_gap_pct,
    ROUND((cpc / CAST(cpc_ceiling AS FLOAT64) - 1) * 100, 1) AS cpc_gap_pct,
    tier,
    CASE
        WHEN paid_rows = 0 THEN 'organic only: no paid delivery to judge'
        WHEN creator_tier IS NULL THEN 'no creator tier in the roster, so no benchmark applies'
        WHEN ctr_benchmark IS NULL THEN 'no benchmark for ' || platform_name || ' ' || creator_tier
        WHEN NOT judged THEN 'no impressions in the evaluation window'
        WHEN tier = 'red' AND ctr_red AND no_conversion
            THEN ctr_text || '; ' || no_conversion_text || ' after ' || CAST(conversion_hours_active AS STRING) || ' h active'
        WHEN tier = 'red' AND ctr_red THEN ctr_text
        WHEN tier = 'red' THEN no_conversion_text || ' after ' || CAST(conversion_hours_active AS STRING) || ' h active'
        WHEN tier = 'yellow' AND ctr_yellow AND cpc_over
            THEN ctr_text || '; CPC ' || cpc_text || ' above the ' || ceiling_text || ' ceiling'
        WHEN tier = 'yellow' AND ctr_yellow THEN ctr_text
        WHEN tier = 'yellow' THEN 'CPC ' || cpc_text || ' above the ' || ceiling_text || ' ceiling'
        ELSE ctr_text
    END || CASE WHEN judged AND NOT conversions_tracked THEN ' (conversions not tracked)' ELSE '' END AS tier_reason,
    COALESCE(tier IN ('green', 'accelerate') AND COALESCE(disclosure_status, '') <> 'disclosed', FALSE)
        AS compliance_flag,
    conversion_source,
    site_conversions
FROM tiered
