-- One statement, so readers see the table before or after the load, never between.
-- The source is the run's rows, de-duplicated on the natural key (latest wins);
-- rows the table holds in the run's dates that the run no longer has are
-- deleted: a restated day replaces the old one, row for row. Deletes are
-- limited to the platform × account pairs the run speaks for ({{scope_t}}), so
-- a run without an account's rows never deletes them. A table without a
-- natural key (quarantine) matches nothing: its dates are replaced whole.
-- Tables are created and widened through the tables API, which carries the
-- column descriptions, partitioning and clustering as typed fields.
MERGE {{target}} T
USING (
  SELECT * FROM {{staging}}
  WHERE TRUE
  {{dedup}}
) S
ON {{key_match}}
WHEN MATCHED AND ({{changed}}) THEN UPDATE SET {{update_set}}
WHEN NOT MATCHED BY TARGET THEN INSERT ({{columns}}) VALUES ({{source_columns}})
WHEN NOT MATCHED BY SOURCE AND T.{{date}} BETWEEN {{start}} AND {{end}} AND {{scope_t}} THEN DELETE
