-- Every channel took the evaluation's message.
UPDATE {{table}} SET delivered_at = {{at}} WHERE evaluation_id = {{evaluation_id}}
