-- Analyst views. Each reads current_facts: one row per (tenant, fact_id) whatever the number of deliveries
-- (FINAL collapses re-deliveries, LIMIT 1 BY keeps the latest content of a conflicting fact), so sums stay
-- right under duplicates.
CREATE VIEW IF NOT EXISTS {db}.current_facts {on_cluster} AS
SELECT *
FROM {db}.learning_facts FINAL
ORDER BY received_time DESC, content_hash DESC
LIMIT 1 BY tenant, fact_id;

CREATE VIEW IF NOT EXISTS {db}.student_daily_xp {on_cluster} AS
SELECT
    tenant,
    student_id,
    toDate(event_time) AS day,
    course_id,
    any(course_name) AS course_name,
    subject_name,
    sum(xp_earned) AS xp,
    sum(total_questions) AS questions,
    sum(correct_questions) AS correct_questions,
    sum(mastered_units) AS mastered_units,
    count() AS facts
FROM {db}.current_facts
GROUP BY tenant, student_id, day, course_id, subject_name;

CREATE VIEW IF NOT EXISTS {db}.student_daily_time_on_task {on_cluster} AS
SELECT
    tenant,
    student_id,
    toDate(event_time) AS day,
    sum(seconds_active) AS active_seconds,
    sum(seconds_inactive) AS inactive_seconds,
    sum(seconds_waste) AS waste_seconds,
    sum(seconds_unknown) AS unknown_seconds,
    sum(seconds_anti_pattern) AS anti_pattern_seconds,
    sum(seconds_active + seconds_inactive + seconds_waste + seconds_unknown + seconds_anti_pattern) AS total_seconds
FROM {db}.current_facts
GROUP BY tenant, student_id, day;

CREATE VIEW IF NOT EXISTS {db}.student_skill_mastery {on_cluster} AS
SELECT
    tenant,
    student_id,
    bncc_code,
    any(bncc_component) AS bncc_component,
    any(bncc_year_group) AS bncc_year_group,
    max(score_ratio) AS best_score_ratio,
    max(score_given) AS best_score,
    countIf(score_ratio IS NOT NULL) AS scored_attempts,
    greatest(toInt64(countIf(score_ratio IS NOT NULL)), ifNull(max(attempts), 0)) AS attempts,
    argMaxIf(proficiency_level, event_time, proficiency_level != '') AS latest_proficiency,
    max(event_time) AS last_event_time
FROM {db}.current_facts
WHERE bncc_code != ''
GROUP BY tenant, student_id, bncc_code;

-- Fact ids delivered with more than one content: same event id, different payload.
CREATE VIEW IF NOT EXISTS {db}.fact_conflicts {on_cluster} AS
SELECT
    tenant,
    fact_id,
    any(event_id) AS event_id,
    any(fact_index) AS fact_index,
    uniqExact(content_hash) AS versions,
    groupUniqArray(content_hash) AS content_hashes,
    min(received_time) AS first_received,
    max(received_time) AS last_received
FROM {db}.learning_facts
GROUP BY tenant, fact_id
HAVING versions > 1;
