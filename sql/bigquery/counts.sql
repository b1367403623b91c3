-- What the merge will do, counted first, for the load's report: rows of the run
-- (de-duplicated), keys the table holds already, of those the changed ones, and
-- the rows the table holds in the run's dates for the pairs the run speaks for.
WITH S AS (
  SELECT * FROM {{staging}}
  WHERE TRUE
  {{dedup}}
), T AS (
  SELECT O.*, TRUE AS _crest_held FROM {{target}} O WHERE O.{{date}} BETWEEN {{start}} AND {{end}} AND {{scope_o}}
)
SELECT
  COUNT(*) AS staged,
  COALESCE(SUM(CASE WHEN T._crest_held THEN 1 ELSE 0 END), 0) AS matched,
  COALESCE(SUM(CASE WHEN T._crest_held AND ({{changed}}) THEN 1 ELSE 0 END), 0) AS changed,
  (SELECT COUNT(*) FROM T) AS held
FROM S LEFT JOIN T ON {{key_match}}
