-- A table without a natural key (quarantine keeps duplicates on purpose) is
-- replaced by date, in one statement: every row it holds in the run's dates
-- meets its date's tombstone and goes; the run's rows, which match nothing, come in.
-- Only rows of the platform × account pairs the run speaks for are deleted.
MERGE INTO {{target}} T
USING (
  SELECT {{columns}}, FALSE AS "_CREST_DELETE"
  FROM {{staging}}
  UNION ALL
  SELECT DISTINCT {{tombstone_columns}}, TRUE AS "_CREST_DELETE"
  FROM {{target}} O
  WHERE O.{{date}} BETWEEN {{start}} AND {{end}}
) S
ON T.{{date}} = S.{{date}} AND S."_CREST_DELETE" AND {{scope_t}}
WHEN MATCHED THEN DELETE
WHEN NOT MATCHED AND NOT S."_CREST_DELETE" THEN INSERT ({{columns}}) VALUES ({{source_columns}})
