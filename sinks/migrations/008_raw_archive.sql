-- The raw archive (issue 12): every accepted event as the gateway published it (the raw topics), its JSON kept
-- as sent, so the read API can return it and `caliper-pipeline renormalize` can derive its facts again after a
-- normalizer change.
--
-- - One row per event version: ReplacingMergeTree keyed by (tenant, event_id, content_hash). event_id is
--   canonical (urn:uuid lower-cased) and content_hash is the fact's (sorted-key JSON after that lower-casing), so a
--   re-delivery of the same event collapses, and a corrected event (same id, other content) is a second version,
--   exactly as in learning_facts. Of two copies of one content the later received is kept.
-- - student_keys: the keyed pseudonym (schemas.privacy.student_key_for) of every id the event names where its
--   learner can be (schemas.event_identity.LEARNER_PATHS). Erasure deletes the rows holding the student's key,
--   and the view below drops the rows of an erased student that arrive later, as for facts.
-- - event_time: when the event says it happened (eventTime; a hub event's endedAtTime, else lastTime, else
--   startedAtTime; offset-less times in the tenant's zone); the received time where it says nothing readable.
-- - Kept for CALIPER_SINK__ARCHIVE_TTL_DAYS after it was received (the sink sets the TTL at start; 365 here).
--   Partitions are months of the received time, so expiry drops whole parts; parts an erasure rewrote are
--   removed from disk after a minute (old_parts_lifetime), as in learning_facts.
CREATE TABLE IF NOT EXISTS {db}.raw_events{local} {on_cluster}
(
    tenant LowCardinality(String),
    source LowCardinality(String),
    event_id String,
    content_hash String,
    event_type LowCardinality(String),
    profile LowCardinality(String),
    client_id LowCardinality(String),
    sensor LowCardinality(String),
    student_id String,
    student_keys Array(String),
    actor_id String,
    event_time DateTime64(3, 'UTC'),
    send_time Nullable(DateTime64(3, 'UTC')),
    received_time DateTime64(3, 'UTC'),
    envelope_index UInt32,
    tenant_timezone LowCardinality(String),
    payload String CODEC(ZSTD(3)),
    archived_time DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replicated}ReplacingMergeTree(received_time)
PARTITION BY toYYYYMM(received_time)
ORDER BY (tenant, event_id, content_hash)
TTL toDateTime(received_time) + toIntervalDay(365)
SETTINGS {dedup_window_setting} = 1000, ttl_only_drop_parts = 1, old_parts_lifetime = 60;

-- distributed: raw_events cityHash64(tenant, event_id)

-- The entry table: one JSON object per archived event (JSONEachRow; the sink builds it from the RawEvent, see
-- sinks.targets), times as epoch milliseconds. A Null table: the view below moves the rows to raw_events, with
-- the insert's deduplication token (deduplicate_blocks_in_dependent_materialized_views).
CREATE TABLE IF NOT EXISTS {db}.raw_events_in {on_cluster}
(
    tenant String,
    client_id String,
    source String,
    event_id String,
    content_hash String,
    event_type String,
    profile String,
    student_id String,
    student_keys Array(String),
    actor_id String,
    sensor String,
    event_time_ms Int64,
    send_time_ms Nullable(Int64),
    received_time_ms Int64,
    envelope_index UInt32,
    tenant_timezone String DEFAULT 'UTC',
    payload String
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_events_loader {on_cluster} TO {db}.raw_events AS
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
    payload
FROM {db}.raw_events_in
WHERE NOT hasAny(student_keys, (SELECT groupArray(student_id_hash) FROM {db}.erasures));
