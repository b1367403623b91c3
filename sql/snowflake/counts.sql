-- What the merge will do, counted first, for the load's report: rows of the run
-- (de-duplicated), keys the table holds already, of those the changed ones, and
-- the rows the table holds in the run's dates for the pairs the run speaks for.
WITH S AS (
  SELECT * FROM {{staging}}
  {{dedup}}
), T AS (
  SELECT O.*, TRUE AS "_CREST_HELD" FROM {{target}} O WHERE O.{{date}} BETWEEN {{start}} AND {{end}} AND {{scope_o}}
)
SELECT
  COUNT(*) AS "STAGED",
  COALESCE(SUM(CASE WHEN T."_CREST_HELD" THEN 1 ELSE 0 END), 0) AS "MATCHED",
  COALESCE(SUM(CASE WHEN T."_CREST_HELD" AND ({{changed}}) THEN 1 ELSE 0 END), 0) AS "CHANGED",
  (SELECT COUNT(*) FROM T) AS "HELD"
FROM S LEFT JOIN T ON {{key_match}}
