-- One row per evaluation x creator x platform, from crest alerts' log: the
-- tier each evaluation gave, what it was before and what changed, so BI can
-- chart tiers over time and count days in a tier.
CREATE OR REPLACE VIEW v_tier_history AS
SELECT
    evaluation_id,
    evaluated_at,
    CAST(evaluated_at AS DATE) AS evaluation_date,
    platform,
    creator_id,
    creator_handle,
    tier,
    previous_tier,
    change,
    tier_reason,
    compliance_flag,
    ctr,
    cpc,
    conversions,
    delivered_at IS NOT NULL AS delivered
FROM alert_log
