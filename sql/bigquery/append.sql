-- Rows appended in one statement: an alert evaluation, a links audit.
INSERT INTO {{table}} ({{columns}}) VALUES
{{rows}}
