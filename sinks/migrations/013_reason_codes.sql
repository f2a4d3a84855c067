-- reason_code: the kind of every failure, one word of the closed vocabulary of schemas.reasons (ReasonCode),
-- beside the human-readable reason; what analysts group failures by.
--
-- A row or record written before the code existed has none: its code is derived from its stage and reason, the
-- same expression below for the rows already stored (the column's default, read for the old parts) and for the
-- records of an older gateway or worker still on the side topics (failed_events_in's default): a sink refusal
-- says "ClickHouse refused it", a dead letter starts with its error's type ("SchemaEncodingError: ...",
-- "NormalizationError: ...", "internal error ..."), a refused request with its status ("422: ..." for an
-- unsupported dataVersion, "400: malformed JSON ...", "400: body: ..."). Anything else reads 'unknown'.
ALTER TABLE {db}.failed_events{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS reason_code LowCardinality(String) DEFAULT multiIf(
        stage = 'sink', if(startsWith(reason, 'ClickHouse refused'), 'clickhouse_refused', 'undecodable'),
        stage = 'streams' AND startsWith(reason, 'SchemaEncodingError'), 'undecodable',
        stage = 'streams' AND startsWith(reason, 'NormalizationError'), 'not_normalizable',
        stage = 'streams' AND startsWith(reason, 'internal error'), 'internal_error',
        stage = 'gateway' AND startsWith(reason, '422: '), 'unsupported_version',
        stage = 'gateway' AND startsWith(reason, '400: malformed JSON'), 'malformed_json',
        stage = 'gateway' AND startsWith(reason, '400: body: '), 'unreadable_body',
        'unknown') AFTER reason;

-- The Distributed table of the cluster layout; on a single node the table above again (IF NOT EXISTS).
ALTER TABLE {db}.failed_events {on_cluster}
    ADD COLUMN IF NOT EXISTS reason_code LowCardinality(String) AFTER reason;

ALTER TABLE {db}.failed_events_in {on_cluster}
    ADD COLUMN IF NOT EXISTS reason_code String DEFAULT multiIf(
        stage = 'sink', if(startsWith(reason, 'ClickHouse refused'), 'clickhouse_refused', 'undecodable'),
        stage = 'streams' AND startsWith(reason, 'SchemaEncodingError'), 'undecodable',
        stage = 'streams' AND startsWith(reason, 'NormalizationError'), 'not_normalizable',
        stage = 'streams' AND startsWith(reason, 'internal error'), 'internal_error',
        stage = 'gateway' AND startsWith(reason, '422: '), 'unsupported_version',
        stage = 'gateway' AND startsWith(reason, '400: malformed JSON'), 'malformed_json',
        stage = 'gateway' AND startsWith(reason, '400: body: '), 'unreadable_body',
        'unknown') AFTER reason;

-- The loader view moves the new column too (010's query plus reason_code).
ALTER TABLE {db}.failed_events_loader {on_cluster} MODIFY QUERY
SELECT tenant, stage, reason, reason_code, client_id, source, job_id, envelope_index, event_id, topic, partition,
       offset, fromUnixTimestamp64Milli(failed_time_ms, 'UTC') AS failed_time, worker_version, student_keys, payload,
       original_base64
FROM {db}.failed_events_in
WHERE NOT hasAny(student_keys, (SELECT groupArray(student_id_hash) FROM {db}.erasures));

-- failed_events_summary as 010 made it, plus reason_code.
CREATE OR REPLACE VIEW {db}.failed_events_summary {on_cluster} AS
SELECT tenant, stage, reason, reason_code, client_id, source, job_id, envelope_index, event_id, topic, partition,
       offset, failed_time, worker_version, loaded_time
FROM {db}.failed_events FINAL;

-- The loader's refused messages: 'clickhouse_refused' (its error says so) or 'undecodable' (the sink could not
-- read the message); older rows read with the code their error implies.
ALTER TABLE {db}.sink_rejects{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS reason_code LowCardinality(String)
        DEFAULT if(startsWith(error, 'ClickHouse refused'), 'clickhouse_refused', 'undecodable') AFTER error;

ALTER TABLE {db}.sink_rejects {on_cluster}
    ADD COLUMN IF NOT EXISTS reason_code LowCardinality(String) AFTER error;

-- sink_rejects_summary as 011 made it, plus reason_code.
CREATE OR REPLACE VIEW {db}.sink_rejects_summary {on_cluster} AS
SELECT topic, partition, offset, error, reason_code, rejected_at
FROM {db}.sink_rejects FINAL;
