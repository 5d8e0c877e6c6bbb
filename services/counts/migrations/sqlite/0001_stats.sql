-- Counts kept in the same transaction as the rows they count. `version` grows
-- with every change so caches can refuse to go back to an older value.
CREATE TABLE IF NOT EXISTS user_stats (
    user_id         INTEGER PRIMARY KEY,
    follow_count    INTEGER NOT NULL DEFAULT 0,
    follower_count  INTEGER NOT NULL DEFAULT 0,
    total_favorited INTEGER NOT NULL DEFAULT 0,
    work_count      INTEGER NOT NULL DEFAULT 0,
    favorite_count  INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS video_stats (
    video_id        INTEGER PRIMARY KEY,
    favorite_count  INTEGER NOT NULL DEFAULT 0,
    comment_count   INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS video_stats_by_favorites ON video_stats (favorite_count DESC, video_id);
CREATE INDEX IF NOT EXISTS user_stats_by_followers ON user_stats (follower_count DESC, user_id);
