-- Columns utm_hygiene gained after its first audits: a table an earlier crest
-- created gets them (nullable; earlier audits read NULL).
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS other_creator BIGINT
