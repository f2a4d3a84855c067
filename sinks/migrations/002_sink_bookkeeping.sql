-- Messages of the facts topic that could not be decoded: kept with their position and bytes, never dropped.
CREATE TABLE IF NOT EXISTS {db}.sink_rejects{local} {on_cluster}
(
    topic LowCardinality(String),
    partition UInt32,
    offset UInt64,
    error String,
    raw_base64 String CODEC(ZSTD(3)),
    rejected_at DateTime64(3, 'UTC')
)
ENGINE = {replicated}ReplacingMergeTree(rejected_at)
ORDER BY (topic, partition, offset)
SETTINGS {dedup_window_setting} = 1000;

-- distributed: sink_rejects cityHash64(topic, partition)

-- The offset range of the batch each partition is writing: after a crash the loader rebuilds exactly this
-- range, so its retry carries the same insert_deduplication_token and ClickHouse drops it.
CREATE TABLE IF NOT EXISTS {db}.sink_batches{local} {on_cluster}
(
    consumer_group LowCardinality(String),
    topic LowCardinality(String),
    partition UInt32,
    first_offset UInt64,
    last_offset UInt64,
    recorded_at DateTime64(6, 'UTC')
)
ENGINE = {replicated}ReplacingMergeTree(recorded_at)
ORDER BY (consumer_group, topic, partition);

-- distributed: sink_batches cityHash64(topic, partition)

-- Right-to-erasure requests carried out, without personal data: the student id is stored as a keyed hash.
CREATE TABLE IF NOT EXISTS {db}.erasures{local} {on_cluster}
(
    tenant LowCardinality(String),
    student_id_hash String,
    requested_by String,
    requested_at DateTime64(3, 'UTC'),
    rows_deleted UInt64
)
ENGINE = {replicated}MergeTree
ORDER BY (tenant, requested_at);

-- distributed: erasures cityHash64(tenant)
