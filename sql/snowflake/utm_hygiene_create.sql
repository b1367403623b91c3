-- crest links audit's results: one row per audit × creator × platform (see
-- crest_core::utm_hygiene); v_utm_hygiene reads the latest audit.
CREATE TABLE IF NOT EXISTS {{table}} (
  audit_id VARCHAR NOT NULL,
  audited_at TIMESTAMP_TZ NOT NULL,
  run_id VARCHAR NOT NULL,
  creator_id VARCHAR,
  creator_handle VARCHAR,
  platform VARCHAR NOT NULL,
  ads BIGINT NOT NULL,
  no_utm BIGINT NOT NULL,
  unresolvable BIGINT NOT NULL,
  wrong_platform BIGINT NOT NULL,
  not_issued BIGINT NOT NULL,
  issued_unseen BIGINT NOT NULL,
  spend NUMBER(38, 6),
  spend_unattributable NUMBER(38, 6),
  clicks BIGINT NOT NULL,
  clicks_unattributable BIGINT NOT NULL,
  other_creator BIGINT
)
