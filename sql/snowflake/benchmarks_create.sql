-- The benchmarks table, empty, so the tier views compile before any
-- `crest benchmarks load` (every tier then says no benchmark applies).
CREATE TABLE IF NOT EXISTS {{table}} (
  platform VARCHAR NOT NULL,
  creator_tier VARCHAR NOT NULL,
  ctr_benchmark NUMBER(38, 6) NOT NULL,
  cpc_ceiling NUMBER(38, 6) NOT NULL,
  effective_from DATE NOT NULL,
  evaluation_days BIGINT,
  conversion_source VARCHAR
)
