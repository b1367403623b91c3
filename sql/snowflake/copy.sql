-- Where the run's Parquet sits behind an external stage, Snowflake reads it
-- itself: no rows travel through crest. The staging table is new, so its load
-- history is empty and every file is read.
COPY INTO {{staging}}
FROM {{stage}}
FILES = ({{files}})
FILE_FORMAT = (TYPE = PARQUET)
MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE
ON_ERROR = ABORT_STATEMENT
