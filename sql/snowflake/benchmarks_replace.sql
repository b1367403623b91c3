-- `crest benchmarks load`: the file's rows replace the table in one statement,
-- so readers see the old benchmarks or the new ones, never none.
CREATE OR REPLACE TABLE {{table}} AS
{{rows}}
