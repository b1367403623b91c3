-- crest links audit's results: one row per audit × creator × platform (see
-- crest_core::utm_hygiene); v_utm_hygiene reads the latest audit.
CREATE TABLE IF NOT EXISTS {{table}} (
  audit_id STRING NOT NULL,
  audited_at TIMESTAMP NOT NULL,
  run_id STRING NOT NULL,
  creator_id STRING,
  creator_handle STRING,
  platform STRING NOT NULL,
  ads INT64 NOT NULL,
  no_utm INT64 NOT NULL,
  unresolvable INT64 NOT NULL,
  wrong_platform INT64 NOT NULL,
  not_issued INT64 NOT NULL,
  issued_unseen INT64 NOT NULL,
  spend NUMERIC,
  spend_unattributable NUMERIC,
  clicks INT64 NOT NULL,
  clicks_unattributable INT64 NOT NULL,
  other_creator INT64
)
