-- A crest table: every column with its description from the canonical schema,
-- clustered by date (the column every load restates and most queries filter on).
CREATE TABLE IF NOT EXISTS {{table}} (
{{columns}}
){{cluster}}
COMMENT = {{comment}}
