-- The benchmarks table, empty, so the tier views compile before any
-- `crest benchmarks load` (every tier then says no benchmark applies).
CREATE TABLE IF NOT EXISTS {{table}} (
  platform STRING NOT NULL,
  creator_tier STRING NOT NULL,
  ctr_benchmark NUMERIC NOT NULL,
  cpc_ceiling NUMERIC NOT NULL,
  effective_from DATE NOT NULL,
  evaluation_days INT64,
  conversion_source STRING
)
