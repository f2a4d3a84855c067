-- learning_fact v3 (issue 12): what a fact means.
-- - send_time is NULL where the source sends none (the hub), instead of 1970-01-01;
-- - event_date: the local date of event_time in the tenant's time zone (tenant_timezone, IANA name): what a
--   school calls "the day" (Date32: the same years as DateTime64, 1900..2299);
-- - date_created: when the source created its record (the hub's object.dateCreated, no longer its event time);
-- - every seed field typed: actor_host, learner_type (the hub's object.assignee.type), generated_id/_type, the
--   time-spent subTypes (seconds_by_sub_type, 'waste/eating' -> seconds);
-- - the learner found by role: actor_id/actor_type name the actor, learner_role says how student_id was found
--   (actor | assignee | session_user | none; '' = loaded before v3); 'none' facts have student_id ''.
-- Columns follow the field order of LearningFact (AFTER), in the fact table and in the entry table. The statements
-- that rewrite data (send_time's type, then its 1970 values) wait for their mutation (mutations_sync = 2).

ALTER TABLE {db}.learning_facts{local} {on_cluster}
    MODIFY COLUMN send_time Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS event_date Nullable(Date32) DEFAULT toDate32(event_time) AFTER received_time,
    ADD COLUMN IF NOT EXISTS tenant_timezone LowCardinality(String) DEFAULT 'UTC' AFTER event_date,
    ADD COLUMN IF NOT EXISTS date_created Nullable(DateTime64(3, 'UTC')) AFTER tenant_timezone,
    ADD COLUMN IF NOT EXISTS actor_id String AFTER student_email,
    ADD COLUMN IF NOT EXISTS actor_host LowCardinality(String) AFTER actor_type,
    ADD COLUMN IF NOT EXISTS learner_role LowCardinality(String) AFTER actor_host,
    ADD COLUMN IF NOT EXISTS learner_type LowCardinality(String) AFTER learner_role,
    ADD COLUMN IF NOT EXISTS generated_id String AFTER object_name,
    ADD COLUMN IF NOT EXISTS generated_type LowCardinality(String) AFTER generated_id,
    ADD COLUMN IF NOT EXISTS seconds_by_sub_type Map(LowCardinality(String), Float64) AFTER seconds_anti_pattern
SETTINGS mutations_sync = 2;

-- The Distributed table of the cluster layout needs the columns too; on a single node this is the table above
-- again and does nothing (IF NOT EXISTS; MODIFY COLUMN to the type it already has).
ALTER TABLE {db}.learning_facts {on_cluster}
    MODIFY COLUMN send_time Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS event_date Nullable(Date32) DEFAULT toDate32(event_time) AFTER received_time,
    ADD COLUMN IF NOT EXISTS tenant_timezone LowCardinality(String) DEFAULT 'UTC' AFTER event_date,
    ADD COLUMN IF NOT EXISTS date_created Nullable(DateTime64(3, 'UTC')) AFTER tenant_timezone,
    ADD COLUMN IF NOT EXISTS actor_id String AFTER student_email,
    ADD COLUMN IF NOT EXISTS actor_host LowCardinality(String) AFTER actor_type,
    ADD COLUMN IF NOT EXISTS learner_role LowCardinality(String) AFTER actor_host,
    ADD COLUMN IF NOT EXISTS learner_type LowCardinality(String) AFTER learner_role,
    ADD COLUMN IF NOT EXISTS generated_id String AFTER object_name,
    ADD COLUMN IF NOT EXISTS generated_type LowCardinality(String) AFTER generated_id,
    ADD COLUMN IF NOT EXISTS seconds_by_sub_type Map(LowCardinality(String), Float64) AFTER seconds_anti_pattern
SETTINGS mutations_sync = 2;

-- Hub facts loaded before v3 carry send_time 1970-01-01 (the hub sends no sendTime): NULL, as v3 writes them.
ALTER TABLE {db}.learning_facts{local} {on_cluster}
    UPDATE send_time = NULL WHERE source = 'hub' AND send_time = toDateTime64(0, 3, 'UTC')
SETTINGS mutations_sync = 2;

-- The entry table: each new field by its Avro name, its DEFAULT the Avro reader's default (what an older writer's
-- container, which lacks the field, gets).
ALTER TABLE {db}.learning_facts_in {on_cluster}
    MODIFY COLUMN send_time_ms Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS event_date_days Nullable(Date32) AFTER received_time_ms,
    ADD COLUMN IF NOT EXISTS tenant_timezone String DEFAULT 'UTC' AFTER event_date_days,
    ADD COLUMN IF NOT EXISTS date_created_ms Nullable(DateTime64(3, 'UTC')) AFTER tenant_timezone,
    ADD COLUMN IF NOT EXISTS actor_id String DEFAULT '' AFTER student_email,
    ADD COLUMN IF NOT EXISTS actor_host String DEFAULT '' AFTER actor_type,
    ADD COLUMN IF NOT EXISTS learner_role String DEFAULT '' AFTER actor_host,
    ADD COLUMN IF NOT EXISTS learner_type String DEFAULT '' AFTER learner_role,
    ADD COLUMN IF NOT EXISTS generated_id String DEFAULT '' AFTER object_name,
    ADD COLUMN IF NOT EXISTS generated_type String DEFAULT '' AFTER generated_id,
    ADD COLUMN IF NOT EXISTS seconds_by_sub_type Map(String, Float64) DEFAULT map() AFTER seconds_anti_pattern;

-- The loader view moves the new columns too. A fact of an older writer has no event_date_days (NULL): its tenant
-- had no time zone then, so its local date is the UTC date of its event time.
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
    extensions_json
FROM {db}.learning_facts_in
WHERE (tenant, student_key) NOT IN (SELECT tenant, student_id_hash FROM {db}.erasures);

-- current_facts (SELECT *) keeps the columns it was created with: recreate it, same definition, so it shows the
-- new columns too.
CREATE OR REPLACE VIEW {db}.current_facts {on_cluster} AS
SELECT *
FROM {db}.learning_facts FINAL
ORDER BY received_time DESC, content_hash DESC
LIMIT 1 BY tenant, fact_id;
