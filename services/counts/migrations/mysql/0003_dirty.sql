-- A count changed since the counter last stored it in its cache. Writers set
-- it in the same statement that changes the count; the counter stores dirty
-- rows in its cache and clears the mark (only if the row did not change in
-- between), so a cache update lost after a commit (a crash, an outage of the
-- counter or of Redis) is made good from the rows once they are back.
ALTER TABLE user_stats
    ADD COLUMN dirty TINYINT NOT NULL DEFAULT 0,
    ADD KEY user_stats_dirty (dirty);

ALTER TABLE video_stats
    ADD COLUMN dirty TINYINT NOT NULL DEFAULT 0,
    ADD KEY video_stats_dirty (dirty);
