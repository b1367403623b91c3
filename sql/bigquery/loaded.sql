-- The last successful load of a manifest, if any: a re-run is then a no-op.
SELECT {{load_id}}, {{target_table}}, {{rows}}, {{inserted}}, {{replaced}}, {{replaced_before}}, {{unchanged}}
FROM {{loads}}
WHERE {{manifest_checksum}} = {{checksum}} AND {{status}} = 'succeeded'
ORDER BY {{load_id}} DESC
