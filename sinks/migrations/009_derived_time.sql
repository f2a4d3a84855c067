-- learning_fact v4: derived_time, when the fact was derived (the streams worker, or `caliper-pipeline renormalize`
-- re-deriving it from the raw archive after a normalizer change). A re-derived fact has the same id, content,
-- send time and received time as the derivation it replaces, so the current-version rule (newest send time,
-- then received time) ties: the newest derivation wins the tie (NULL, facts of older writers, comes last).
ALTER TABLE {db}.learning_facts{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS derived_time Nullable(DateTime64(3, 'UTC')) AFTER normalizer_version;

-- The Distributed table of the cluster layout; on a single node the table above again (IF NOT EXISTS).
ALTER TABLE {db}.learning_facts {on_cluster}
    ADD COLUMN IF NOT EXISTS derived_time Nullable(DateTime64(3, 'UTC')) AFTER normalizer_version;

ALTER TABLE {db}.learning_facts_in {on_cluster}
    ADD COLUMN IF NOT EXISTS derived_time_ms Nullable(DateTime64(3, 'UTC')) AFTER normalizer_version;

-- The loader view moves the new column too (006's query plus derived_time).
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
    extensions_json
FROM {db}.learning_facts_in
WHERE (tenant, student_key) NOT IN (SELECT tenant, student_id_hash FROM {db}.erasures);

-- The current version of each fact (007's rule) with the derivation as the last tie but one: newest send time
-- (the received time where the source sends none), then received time, then the newest derivation, then the
-- content hash (a stable choice). Without FINAL: FINAL would first collapse rows of one content keeping the LAST
-- INSERTED (their version column, received_time, ties), which is not always the newest derivation; LIMIT 1 BY
-- over every row applies the rule alone, and an undeduplicated copy is just one more candidate of the same values.
CREATE OR REPLACE VIEW {db}.current_facts {on_cluster} AS
SELECT *
FROM {db}.learning_facts
ORDER BY coalesce(send_time, received_time) DESC, received_time DESC, derived_time DESC NULLS LAST, content_hash DESC
LIMIT 1 BY tenant, fact_id;
