-- learning_fact v6: caliper_version, the Caliper version of the event ('1.1' or '1.2', read from its @context).
-- Rows written before it read as '1.2': until then only Caliper 1.2 (and the hub's 1.2 events) was accepted.
ALTER TABLE {db}.learning_facts{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS caliper_version LowCardinality(String) DEFAULT '1.2';

-- The Distributed table of the cluster layout; on a single node the table above again (IF NOT EXISTS).
ALTER TABLE {db}.learning_facts {on_cluster}
    ADD COLUMN IF NOT EXISTS caliper_version LowCardinality(String) DEFAULT '1.2';

ALTER TABLE {db}.learning_facts_in {on_cluster}
    ADD COLUMN IF NOT EXISTS caliper_version String DEFAULT '1.2';

-- The loader view moves the new column too (010's query plus caliper_version).
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
    CAST(envelope_index, 'Nullable(UInt32)') AS envelope_index,
    caliper_version
FROM {db}.learning_facts_in
WHERE (tenant, student_key) NOT IN (SELECT tenant, student_id_hash FROM {db}.erasures);

-- current_facts as 010 made it: its SELECT * takes the new columns only when the view is created again.
CREATE OR REPLACE VIEW {db}.current_facts {on_cluster} AS
SELECT *
FROM {db}.learning_facts
ORDER BY coalesce(send_time, received_time) DESC, received_time DESC, derived_time DESC NULLS LAST, content_hash DESC
LIMIT 1 BY tenant, fact_id;
