-- One evaluation's rows, not delivered yet.
INSERT INTO {{table}} ({{columns}}) VALUES
{{rows}}
