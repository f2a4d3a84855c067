-- Delivery receipts (issue 16): every accepted request is a job (schemas.jobs); what became of each of its events
-- is read from the tables below (sinks.jobs_model), and failed events are loaded into ClickHouse.
--
-- learning_fact v5: job_id and envelope_index, the job of the request that carried the event and the event's
-- position in it (NULL for facts of older writers and for re-derivations, which belong to no request).
ALTER TABLE {db}.learning_facts{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS job_id Nullable(String),
    ADD COLUMN IF NOT EXISTS envelope_index Nullable(UInt32);

-- The Distributed table of the cluster layout; on a single node the table above again (IF NOT EXISTS).
ALTER TABLE {db}.learning_facts {on_cluster}
    ADD COLUMN IF NOT EXISTS job_id Nullable(String),
    ADD COLUMN IF NOT EXISTS envelope_index Nullable(UInt32);

ALTER TABLE {db}.learning_facts_in {on_cluster}
    ADD COLUMN IF NOT EXISTS job_id Nullable(String),
    ADD COLUMN IF NOT EXISTS envelope_index Nullable(Int64);

-- The loader view moves the new columns too (009's query plus job_id, envelope_index).
ALTER TABLE {db}.learning_facts_loader {on_cluster} MODIFY QUERY
SELECT
    fact_id,
    fact_index,
    content_hash,
    tenant,
    client_id,
    source,
    event_id,
    event_type,
    profile,
    action,
    event_time_ms AS event_time,
    send_time_ms AS send_time,
    received_time_ms AS received_time,
    ifNull(event_date_days, toDate32(event_time_ms)) AS event_date,
    tenant_timezone,
    date_created_ms AS date_created,
    sensor,
    ed_app,
    student_id,
    student_email_hash,
    student_key,
    student_email,
    actor_id,
    actor_type,
    actor_host,
    learner_role,
    learner_type,
    object_id,
    object_type,
    object_name,
    generated_id,
    generated_type,
    activity_id,
    activity_name,
    activity_type,
    course_id,
    course_name,
    app_name,
    subject_name,
    discipline_code,
    discipline_type,
    bncc_code,
    bncc_stage,
    bncc_year_group,
    bncc_component,
    bncc_number,
    xp_earned,
    total_questions,
    correct_questions,
    mastered_units,
    seconds_active,
    seconds_inactive,
    seconds_waste,
    seconds_unknown,
    seconds_anti_pattern,
    seconds_by_sub_type,
    score_given,
    max_score,
    score_ratio,
    proficiency_level,
    attempts,
    started_time_ms AS started_time,
    ended_time_ms AS ended_time,
    last_access_time_ms AS last_access_time,
    total_time_seconds,
    percent_read,
    completion_type,
    finished,
    frequency_assigned,
    book_level,
    session_id,
    group_id,
    normalizer_version,
    derived_time_ms AS derived_time,
    extensions_json,
    job_id,
    CAST(envelope_index, 'Nullable(UInt32)') AS envelope_index
FROM {db}.learning_facts_in
WHERE (tenant, student_key) NOT IN (SELECT tenant, student_id_hash FROM {db}.erasures);

-- current_facts as 009 made it: its SELECT * takes the new columns only when the view is created again.
CREATE OR REPLACE VIEW {db}.current_facts {on_cluster} AS
SELECT *
FROM {db}.learning_facts
ORDER BY coalesce(send_time, received_time) DESC, received_time DESC, derived_time DESC NULLS LAST, content_hash DESC
LIMIT 1 BY tenant, fact_id;

-- The jobs (the gateway's <prefix>jobs topic, one row per part of a job): who sent it, when, how many events and
-- entities, and each event's position and id. Kept 30 days (the status of an older job is 404).
CREATE TABLE IF NOT EXISTS {db}.jobs{local} {on_cluster}
(
    tenant LowCardinality(String),
    job_id String,
    part UInt32,
    parts UInt32,
    client_id LowCardinality(String),
    endpoint LowCardinality(String),
    received_time DateTime64(3, 'UTC'),
    accepted UInt32,
    entities UInt32,
    event_indexes Array(UInt32),
    event_ids Array(String),
    loaded_time DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replicated}ReplacingMergeTree(loaded_time)
PARTITION BY toYYYYMM(received_time)
ORDER BY (tenant, job_id, part)
TTL toDateTime(received_time) + toIntervalDay(30)
SETTINGS {dedup_window_setting} = 1000, ttl_only_drop_parts = 1;

-- distributed: jobs cityHash64(tenant, job_id)

CREATE TABLE IF NOT EXISTS {db}.jobs_in {on_cluster}
(
    tenant String,
    job_id String,
    part UInt32,
    parts UInt32,
    client_id String,
    endpoint String,
    received_time_ms Int64,
    accepted UInt32,
    entities UInt32,
    event_indexes Array(UInt32),
    event_ids Array(String)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.jobs_loader {on_cluster} TO {db}.jobs AS
SELECT tenant, job_id, part, parts, client_id, endpoint, fromUnixTimestamp64Milli(received_time_ms, 'UTC') AS received_time,
       accepted, entities, event_indexes, event_ids
FROM {db}.jobs_in;

-- Which events of a job have their facts in ClickHouse: filled from every fact insert (the same insert, so the
-- same deduplication token) that carries a job; one row per fact, keyed by the job.
CREATE TABLE IF NOT EXISTS {db}.job_facts{local} {on_cluster}
(
    tenant LowCardinality(String),
    job_id String,
    envelope_index UInt32,
    fact_index UInt32,
    event_id String,
    loaded_time DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replicated}ReplacingMergeTree(loaded_time)
PARTITION BY toYYYYMM(loaded_time)
ORDER BY (tenant, job_id, envelope_index, fact_index)
TTL toDateTime(loaded_time) + toIntervalDay(30)
SETTINGS {dedup_window_setting} = 1000, ttl_only_drop_parts = 1;

-- distributed: job_facts cityHash64(tenant, job_id)

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.job_facts_loader {on_cluster} TO {db}.job_facts AS
SELECT tenant, assumeNotNull(job_id) AS job_id, toUInt32(assumeNotNull(envelope_index)) AS envelope_index,
       fact_index, event_id
FROM {db}.learning_facts_in
WHERE job_id IS NOT NULL AND envelope_index IS NOT NULL;

-- Failed events: whatever did not become loaded facts, with the reason, where it failed (stage) and what was sent.
-- - stage 'gateway': a request the gateway refused for its content (the <prefix>rejected topic; no job: it was not
--   accepted); original = the request's body (its first 64 KiB);
-- - stage 'streams': a dead letter (<prefix>deadletter): an accepted event the worker could not normalize;
--   original = the raw message (RawEvent Avro), payload = the event's JSON;
-- - stage 'sink': a message ClickHouse refused at load (the loader's isolation, as in sink_rejects).
-- One row per failed message: (topic, partition, offset) is where the failed message was (the raw event's position
-- for a dead letter), so a re-delivered failure record collapses; a replayed event that fails again is a new row.
-- original_base64 and payload hold the event as sent (personal data in clear): analysts read failed_events_summary,
-- which has neither; student_keys (as in raw_events) make the rows erasable.
CREATE TABLE IF NOT EXISTS {db}.failed_events{local} {on_cluster}
(
    tenant LowCardinality(String),
    stage LowCardinality(String),
    reason String,
    client_id LowCardinality(String),
    source LowCardinality(String),
    job_id String,
    envelope_index Nullable(UInt32),
    event_id String,
    topic LowCardinality(String),
    partition UInt32,
    offset UInt64,
    failed_time DateTime64(3, 'UTC'),
    worker_version LowCardinality(String),
    student_keys Array(String),
    payload String CODEC(ZSTD(3)),
    original_base64 String CODEC(ZSTD(3)),
    loaded_time DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replicated}ReplacingMergeTree(loaded_time)
PARTITION BY toYYYYMM(failed_time)
ORDER BY (tenant, stage, topic, partition, offset)
SETTINGS {dedup_window_setting} = 1000, old_parts_lifetime = 60;

-- distributed: failed_events cityHash64(tenant, topic, partition)

CREATE TABLE IF NOT EXISTS {db}.failed_events_in {on_cluster}
(
    tenant String,
    stage String,
    reason String,
    client_id String,
    source String,
    job_id String,
    envelope_index Nullable(UInt32),
    event_id String,
    topic String,
    partition UInt32,
    offset UInt64,
    failed_time_ms Int64,
    worker_version String,
    student_keys Array(String),
    payload String,
    original_base64 String
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.failed_events_loader {on_cluster} TO {db}.failed_events AS
SELECT tenant, stage, reason, client_id, source, job_id, envelope_index, event_id, topic, partition, offset,
       fromUnixTimestamp64Milli(failed_time_ms, 'UTC') AS failed_time, worker_version, student_keys, payload,
       original_base64
FROM {db}.failed_events_in
WHERE NOT hasAny(student_keys, (SELECT groupArray(student_id_hash) FROM {db}.erasures));

-- What analysts may read of the failed events: everything but what was sent (payload, original bytes) and the
-- erasure keys; one row per failed message (FINAL collapses re-delivered failure records).
CREATE OR REPLACE VIEW {db}.failed_events_summary {on_cluster} AS
SELECT tenant, stage, reason, client_id, source, job_id, envelope_index, event_id, topic, partition, offset,
       failed_time, worker_version, loaded_time
FROM {db}.failed_events FINAL;
