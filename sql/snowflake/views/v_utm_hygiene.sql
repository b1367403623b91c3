-- One row per creator x platform from the latest `crest links audit`: the
-- paid ads whose links need attention and the share of spend and clicks no
-- creator can be credited with; `clean` when every ad carries an issued link
-- of its own platform that resolves to its creator, and none of the
-- creator's own Spark Ads carries another creator's link (other_creator,
-- empty where the audit had no roster to look).
CREATE OR REPLACE VIEW v_utm_hygiene ({{columns}}) AS
SELECT
    audited_at,
    run_id,
    creator_id,
    creator_handle,
    platform,
    ads,
    no_utm,
    unresolvable,
    wrong_platform,
    other_creator,
    not_issued,
    issued_unseen,
    spend,
    spend_unattributable,
    CAST(spend_unattributable AS DOUBLE) / NULLIF(CAST(spend AS DOUBLE), 0) AS spend_unattributable_share,
    clicks,
    clicks_unattributable,
    CAST(clicks_unattributable AS DOUBLE) / NULLIF(CAST(clicks AS DOUBLE), 0) AS clicks_unattributable_share,
    (no_utm + unresolvable + wrong_platform + COALESCE(other_creator, 0) + not_issued + issued_unseen) = 0 AS clean
FROM utm_hygiene
WHERE audited_at = (SELECT MAX(audited_at) FROM utm_hygiene)
