-- Per platform and campaign: move red creators' recent daily spend (their
-- average over the as-of date's last 7 days in that campaign) to the
-- campaign's accelerate creators, in proportion to their efficiency:
-- conversions (of the benchmark row's conversion_source) per unit of spend
-- when every receiving creator has conversions, else CTR. Never to a
-- creator with a compliance flag. One row
-- per creator that gives (`reduce`) or receives (`increase`), with the
-- arithmetic in columns: pool x share = suggested_daily_change.
CREATE OR REPLACE VIEW v_budget_reallocation ({{columns}}) AS
WITH recent AS (
    SELECT
        cp.platform,
        cp.campaign_id,
        MAX(cp.campaign_name) AS campaign_name,
        cp.creator_id,
        CAST(SUM(cp.spend_reporting) AS DOUBLE) / 7 AS recent_daily_spend
    FROM creator_performance cp
    JOIN v_creator_tier t ON t.platform = cp.platform AND t.creator_id = cp.creator_id
    WHERE cp.channel = 'paid'
      AND cp.campaign_id IS NOT NULL
      AND cp.date > DATEADD('day', -7, t.as_of_date)
    GROUP BY cp.platform, cp.campaign_id, cp.creator_id
),
movers AS (
    SELECT
        r.platform,
        r.campaign_id,
        r.campaign_name,
        r.creator_id,
        t.creator_handle,
        t.tier,
        r.recent_daily_spend,
        CASE WHEN t.tier = 'red' THEN 'reduce' ELSE 'increase' END AS action,
        CAST(CASE WHEN t.conversion_source = 'platform' THEN t.conversions ELSE t.site_conversions END AS DOUBLE)
            / NULLIF(CAST(t.spend_reporting AS DOUBLE), 0) AS conversions_per_spend,
        t.ctr
    FROM recent r
    JOIN v_creator_tier t ON t.platform = r.platform AND t.creator_id = r.creator_id
    WHERE t.tier = 'red' OR (t.tier = 'accelerate' AND NOT t.compliance_flag)
),
campaigns AS (
    SELECT
        platform,
        campaign_id,
        SUM(CASE WHEN action = 'reduce' THEN recent_daily_spend ELSE 0 END) AS pool,
        SUM(CASE WHEN action = 'increase' THEN 1 ELSE 0 END) AS receivers,
        SUM(CASE WHEN action = 'increase' AND conversions_per_spend > 0 THEN 1 ELSE 0 END) AS receivers_converting
    FROM movers
    GROUP BY platform, campaign_id
),
weighted AS (
    SELECT
        m.*,
        c.pool,
        CASE WHEN c.receivers_converting = c.receivers THEN 'conversions per unit of spend' ELSE 'CTR' END
            AS efficiency_basis,
        CASE
            WHEN m.action = 'reduce' THEN NULL
            WHEN c.receivers_converting = c.receivers THEN m.conversions_per_spend
            ELSE m.ctr
        END AS efficiency
    FROM movers m
    JOIN campaigns c ON c.platform = m.platform AND c.campaign_id = m.campaign_id
    WHERE c.pool > 0 AND c.receivers > 0
)
SELECT
    platform,
    campaign_id,
    campaign_name,
    creator_id,
    creator_handle,
    tier,
    action,
    recent_daily_spend,
    pool,
    efficiency_basis,
    efficiency,
    efficiency / SUM(efficiency) OVER (PARTITION BY platform, campaign_id) AS share,
    CASE
        WHEN action = 'reduce' THEN -recent_daily_spend
        ELSE pool * (efficiency / SUM(efficiency) OVER (PARTITION BY platform, campaign_id))
    END AS suggested_daily_change
FROM weighted
