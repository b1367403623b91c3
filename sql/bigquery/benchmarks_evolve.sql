-- Columns benchmarks gained after its first loads: a table an earlier crest
-- created gets them (null: the platforms' conversions).
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS conversion_source STRING
