-- One statement, so readers see the table before or after the load, never between.
-- The source is the run's rows, de-duplicated on the natural key (latest wins),
-- plus a tombstone for every key the table holds in the run's dates that the
-- run no longer has: a restated day replaces the old one, row for row. Only
-- keys of the platform × account pairs the run speaks for get a tombstone.
MERGE INTO {{target}} T
USING (
  SELECT {{columns}}, FALSE AS "_CREST_DELETE"
  FROM {{staging}}
  {{dedup}}
  UNION ALL
  SELECT {{tombstone_columns}}, TRUE AS "_CREST_DELETE"
  FROM {{target}} O
  WHERE O.{{date}} BETWEEN {{start}} AND {{end}}
    AND {{scope_o}}
    AND NOT EXISTS (SELECT 1 FROM {{staging}} X WHERE {{staged_key_match}})
) S
ON {{key_match}}
WHEN MATCHED AND S."_CREST_DELETE" THEN DELETE
WHEN MATCHED AND ({{changed}}) THEN UPDATE SET {{update_set}}
WHEN NOT MATCHED AND NOT S."_CREST_DELETE" THEN INSERT ({{columns}}) VALUES ({{source_columns}})
