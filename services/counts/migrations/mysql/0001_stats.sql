-- Counts kept in the same transaction as the rows they count. `version` grows
-- with every change so caches can refuse to go back to an older value.
CREATE TABLE IF NOT EXISTS user_stats (
    user_id         BIGINT NOT NULL PRIMARY KEY,
    follow_count    BIGINT NOT NULL DEFAULT 0,
    follower_count  BIGINT NOT NULL DEFAULT 0,
    total_favorited BIGINT NOT NULL DEFAULT 0,
    work_count      BIGINT NOT NULL DEFAULT 0,
    favorite_count  BIGINT NOT NULL DEFAULT 0,
    version         BIGINT NOT NULL DEFAULT 0,
    KEY user_stats_by_followers (follower_count, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS video_stats (
    video_id        BIGINT NOT NULL PRIMARY KEY,
    favorite_count  BIGINT NOT NULL DEFAULT 0,
    comment_count   BIGINT NOT NULL DEFAULT 0,
    version         BIGINT NOT NULL DEFAULT 0,
    KEY video_stats_by_favorites (favorite_count, video_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
