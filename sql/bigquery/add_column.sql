-- A newer canonical schema adds a nullable column; old rows read it as NULL.
ALTER TABLE {{table}} ADD COLUMN IF NOT EXISTS {{column}} {{type}} OPTIONS(description = {{description}})
