-- The pseudonymous student key (LearningFact.student_key, learning_fact v2): HMAC-SHA256 of tenant + student id
-- keyed with CALIPER_PRIVACY__STUDENT_KEY, so erasure can match a student without writing the id in clear.
-- Rows loaded before this migration (and facts of a v1 writer) hold ''.
ALTER TABLE {db}.learning_facts{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS student_key String AFTER student_email_hash;

-- The Distributed table of the cluster layout needs the column too; on a single node this is the table above
-- again and does nothing (IF NOT EXISTS).
ALTER TABLE {db}.learning_facts {on_cluster}
    ADD COLUMN IF NOT EXISTS student_key String AFTER student_email_hash;

-- current_facts was created (003) as SELECT * before the column existed, and a view keeps the columns it was
-- created with: recreate it, same definition, so it shows student_key too.
CREATE OR REPLACE VIEW {db}.current_facts {on_cluster} AS
SELECT *
FROM {db}.learning_facts FINAL
ORDER BY received_time DESC, content_hash DESC
LIMIT 1 BY tenant, fact_id;
