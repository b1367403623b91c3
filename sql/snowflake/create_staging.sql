-- Where a load's rows wait, unseen by readers, until the merge. Transient: no
-- fail-safe storage for data that lives minutes.
CREATE TRANSIENT TABLE {{staging}} (
{{columns}}
)
