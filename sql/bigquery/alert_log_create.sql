-- crest alerts' log: one row per evaluation × creator × platform (see
-- crest_core::alert_log); v_tier_history reads it.
CREATE TABLE IF NOT EXISTS {{table}} (
  evaluation_id STRING NOT NULL,
  evaluated_at TIMESTAMP NOT NULL,
  platform STRING NOT NULL,
  creator_id STRING NOT NULL,
  creator_handle STRING,
  tier STRING,
  previous_tier STRING,
  change STRING,
  tier_reason STRING,
  compliance_flag BOOL NOT NULL,
  ctr FLOAT64,
  cpc FLOAT64,
  conversions FLOAT64,
  delivered_at TIMESTAMP
)
