-- crest alerts' log: one row per evaluation × creator × platform (see
-- crest_core::alert_log); v_tier_history reads it.
CREATE TABLE IF NOT EXISTS {{table}} (
  evaluation_id VARCHAR NOT NULL,
  evaluated_at TIMESTAMP_TZ NOT NULL,
  platform VARCHAR NOT NULL,
  creator_id VARCHAR NOT NULL,
  creator_handle VARCHAR,
  tier VARCHAR,
  previous_tier VARCHAR,
  change VARCHAR,
  tier_reason VARCHAR,
  compliance_flag BOOLEAN NOT NULL,
  ctr DOUBLE,
  cpc DOUBLE,
  conversions DOUBLE,
  delivered_at TIMESTAMP_TZ
)
