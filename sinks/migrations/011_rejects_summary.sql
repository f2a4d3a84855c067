-- What analysts may read of the loader's refused messages (sink_rejects keeps them byte for byte, a raw topic's
-- included: emails and names in clear, with no erasure keys; the SQL policy keeps it from analysts).
CREATE OR REPLACE VIEW {db}.sink_rejects_summary {on_cluster} AS
SELECT topic, partition, offset, error, rejected_at
FROM {db}.sink_rejects FINAL;
