-- Windows: the sink inserts once per window per table, across the partitions of every topic that feeds it. Each
-- partition's row of sink_batches now also says which window its range belongs to (window_id, the window's
-- deduplication token), how many partitions that window holds (parts), and whether its insert returned (done).
-- Rows recorded before this migration read as one-partition windows ('' , 1) whose insert is not known to be done:
-- the loader rebuilds them exactly, as it always did.
ALTER TABLE {db}.sink_batches{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS window_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS parts UInt32 DEFAULT 1,
    ADD COLUMN IF NOT EXISTS done UInt8 DEFAULT 0;

-- The Distributed table of the cluster layout needs the columns too; on a single node this is the table above
-- again and does nothing (IF NOT EXISTS).
ALTER TABLE {db}.sink_batches {on_cluster}
    ADD COLUMN IF NOT EXISTS window_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS parts UInt32 DEFAULT 1,
    ADD COLUMN IF NOT EXISTS done UInt8 DEFAULT 0;
