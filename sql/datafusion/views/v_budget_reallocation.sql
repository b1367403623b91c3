-- Per platform and campaign: move red creators' recent daily spend (their
-- average over the as-of date's last 7 days in that campaign) to the
-- campaign's accelerate creators, in proportion to their efficiency:
-- conversions (of the benchmark row's conversion_source) per unit of spend
-- when every receiving creator has conversions, else CTR. Never to a
-- creator with a compliance flag. One row
-- per creator that gives (`reduce`) or receives (`increase`), with the
-- arithmetic in columns: pool x share = suggested_daily_change.
CREATE OR REPLACE VIEW v_budget_reallocation AS
WITH candidates AS (
    SELECT
        platform,
        creator_id,
        creator_handle,
        tier,
        as_of_date,
        CASE WHEN tier = 'red' THEN 'reduce' ELSE 'increase' END AS action,
        CAST(CASE WHEN conversion_source = 'platform' THEN conversions ELSE site_conversions END AS DOUBLE)
            / NULLIF(CAST(spend_reporting AS DOUBLE), 0) AS conversions_per_spend,
        ctr
    FROM v_creator_tier
    WHERE tier = 'red' OR (tier = 'accelerate' AND NOT compliance_flag)
),
movers AS (
    SELECT
        c.platform,
        cp.campaign_id,
        MAX(cp.campaign_name) AS campaign_name,
        c.creator_id,
        MAX(c.creator_handle) AS creator_handle,
        MAX(c.tier) AS tier,
        MAX(c.action) AS action,
        MAX(c.conversions_per_spend) AS conversions_per_spend,
        MAX(c.ctr) AS ctr,
        CAST(SUM(cp.spend_reporting) AS DOUBLE) / 7 AS recent_daily_spend
    FROM creator_performance cp
    JOIN candidates c ON c.platform = cp.platform AND c.creator_id = cp.creator_id
    WHERE cp.channel = 'paid'
      AND cp.campaign_id IS NOT NULL
      AND CAST(date_part('epoch', cp.date) AS BIGINT) > CAST(date_part('epoch', c.as_of_date) AS BIGINT) - 7 * 86400
    GROUP BY c.platform, cp.campaign_id, c.creator_id
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
