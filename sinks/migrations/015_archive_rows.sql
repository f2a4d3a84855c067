-- The raw archive's rows come from the streams worker (schemas.archive_rows, Avro blocks on the archive topic; the
-- sink appends them to raw_events_in without decoding them), and carry two more of the raw event's fields:
-- job_id, the job of the request that carried the event (schemas.jobs; '' for events archived before this
-- migration and for events of older gateways), and extensions_policy, the tenant's personal-data policy of
-- extensions when the gateway accepted the event ('' the default policy, and for events archived before).
ALTER TABLE {db}.raw_events{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS job_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS extensions_policy String DEFAULT '';

-- The Distributed table of the cluster layout; on a single node the table above again (IF NOT EXISTS).
ALTER TABLE {db}.raw_events {on_cluster}
    ADD COLUMN IF NOT EXISTS job_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS extensions_policy String DEFAULT '';

-- The entry table takes the worker's rows as Avro (each field fills the column of its name).
ALTER TABLE {db}.raw_events_in {on_cluster}
    ADD COLUMN IF NOT EXISTS job_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS extensions_policy String DEFAULT '';

-- The loader view moves the new columns too (008's query plus job_id, extensions_policy).
ALTER TABLE {db}.raw_events_loader {on_cluster} MODIFY QUERY
SELECT
    tenant,
    source,
    event_id,
    content_hash,
    event_type,
    profile,
    client_id,
    sensor,
    student_id,
    student_keys,
    actor_id,
    fromUnixTimestamp64Milli(event_time_ms, 'UTC') AS event_time,
    fromUnixTimestamp64Milli(send_time_ms, 'UTC') AS send_time,
    fromUnixTimestamp64Milli(received_time_ms, 'UTC') AS received_time,
    envelope_index,
    tenant_timezone,
    payload,
    job_id,
    extensions_policy
FROM {db}.raw_events_in
WHERE NOT hasAny(student_keys, (SELECT groupArray(student_id_hash) FROM {db}.erasures));
