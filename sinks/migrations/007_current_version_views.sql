-- What analysts count, as a school means it (issue 12).
--
-- The current version of an event: a fact id (tenant + event id + index) may have several versions (an event
-- corrected by its sender: same id, other content). The current one is the one SENT last: the newest send time
-- (the envelope's sendTime; the received time where the source sends none, as the hub), ties broken by the
-- received time. An identical late retry of an older version (same content, so the same row after FINAL, only
-- received later) never replaces a newer version: its send time is the older one.
CREATE OR REPLACE VIEW {db}.current_facts {on_cluster} AS
SELECT *
FROM {db}.learning_facts FINAL
ORDER BY coalesce(send_time, received_time) DESC, received_time DESC, content_hash DESC
LIMIT 1 BY tenant, fact_id;

-- XP and activities per student and LOCAL day (the tenant's time zone): only activity facts (a Timeback
-- ActivityEvent carries the XP and question metrics; time-spent, grade and view facts are no activities), and
-- only facts that name a student.
CREATE OR REPLACE VIEW {db}.student_daily_xp {on_cluster} AS
SELECT
    tenant,
    student_id,
    ifNull(event_date, toDate32(event_time)) AS day,
    course_id,
    any(course_name) AS course_name,
    subject_name,
    sum(xp_earned) AS xp,
    sum(total_questions) AS questions,
    sum(correct_questions) AS correct_questions,
    sum(mastered_units) AS mastered_units,
    count() AS activities
FROM {db}.current_facts
WHERE event_type = 'ActivityEvent' AND student_id != ''
GROUP BY tenant, student_id, day, course_id, subject_name;

-- Time on task per student and local day: the Timeback time-spent categories, plus the time the hub reports for
-- an assignment (object.totalTime, on the day the learning happened), which has no category.
CREATE OR REPLACE VIEW {db}.student_daily_time_on_task {on_cluster} AS
SELECT
    tenant,
    student_id,
    ifNull(event_date, toDate32(event_time)) AS day,
    sum(seconds_active) AS active_seconds,
    sum(seconds_inactive) AS inactive_seconds,
    sum(seconds_waste) AS waste_seconds,
    sum(seconds_unknown) AS unknown_seconds,
    sum(seconds_anti_pattern) AS anti_pattern_seconds,
    sumIf(ifNull(total_time_seconds, 0), source = 'hub') AS hub_seconds,
    active_seconds + inactive_seconds + waste_seconds + unknown_seconds + anti_pattern_seconds + hub_seconds
        AS total_seconds
FROM {db}.current_facts
WHERE student_id != ''
GROUP BY tenant, student_id, day;

-- Every day of each student's span (first to last day with any fact), with zeros where nothing happened: the
-- view to average over, so days without activity count as days.
CREATE OR REPLACE VIEW {db}.student_daily_calendar {on_cluster} AS
WITH spans AS (
    SELECT tenant, student_id, min(ifNull(event_date, toDate32(event_time))) AS first_day,
           max(ifNull(event_date, toDate32(event_time))) AS last_day
    FROM {db}.current_facts
    WHERE student_id != ''
    GROUP BY tenant, student_id
)
SELECT
    spans.tenant AS tenant,
    spans.student_id AS student_id,
    calendar_day AS day,
    ifNull(xp.xp, 0) AS xp,
    ifNull(xp.activities, 0) AS activities,
    ifNull(tt.total_seconds, 0) AS total_seconds,
    ifNull(tt.active_seconds, 0) AS active_seconds
FROM spans
ARRAY JOIN arrayMap(offset -> spans.first_day + offset,
                    range(toUInt32(dateDiff('day', spans.first_day, spans.last_day) + 1))) AS calendar_day
LEFT JOIN (
    SELECT tenant, student_id, day, sum(xp) AS xp, sum(activities) AS activities
    FROM {db}.student_daily_xp GROUP BY tenant, student_id, day
) AS xp ON xp.tenant = spans.tenant AND xp.student_id = spans.student_id AND xp.day = calendar_day
LEFT JOIN {db}.student_daily_time_on_task AS tt
    ON tt.tenant = spans.tenant AND tt.student_id = spans.student_id AND tt.day = calendar_day;

CREATE OR REPLACE VIEW {db}.student_skill_mastery {on_cluster} AS
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
WHERE bncc_code != '' AND student_id != ''
GROUP BY tenant, student_id, bncc_code;
