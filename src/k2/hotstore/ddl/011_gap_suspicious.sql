-- A trade id far beyond the highest seen (more than the venue's max_id_jump) is held as suspect;
-- once the stream confirms the jump, the ids skipped are recorded as a 'suspicious' gap, with
-- why in `detail`, and are never fetched blindly (one corrupt frame cannot start a repair of
-- billions of ids).
ALTER TABLE k2.feed_gaps
    MODIFY COLUMN outcome Enum8('pending' = 0, 'repaired' = 1, 'partial' = 2, 'unrecoverable' = 3, 'suspicious' = 4);
ALTER TABLE k2.feed_gaps ADD COLUMN IF NOT EXISTS detail String AFTER recovered;
